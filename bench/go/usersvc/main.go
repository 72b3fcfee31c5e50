// usersvc: the plain Go service issue 11 compares the mesh with. One
// process, net/http, database/sql with github.com/lib/pq and a pool of 16
// connections; GET /v1/users/{id} is one SELECT, POST /v1/users one INSERT
// (the mesh's create also writes an outbox row in the same transaction;
// this one does not). The table is "users" on the connection's search_path.
package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lib/pq"
)

type user struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

type server struct {
	get    *sql.Stmt
	insert *sql.Stmt
}

const timeLayout = "2006-01-02T15:04:05.000Z"

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}

// validUUID: 8-4-4-4-12 hex digits.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *server) getUser(w http.ResponseWriter, r *http.Request, id string) {
	if !validUUID(id) {
		writeError(w, http.StatusBadRequest, "id is not a UUID")
		return
	}
	var u user
	var created, updated time.Time
	err := s.get.QueryRowContext(r.Context(), id).Scan(&u.ID, &u.Name, &u.Email, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, http.StatusNotFound, "no such user")
		return
	}
	if err != nil {
		log.Printf("get %s: %v", id, err)
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	u.CreatedAt = created.UTC().Format(timeLayout)
	u.UpdatedAt = updated.UTC().Format(timeLayout)
	writeJSON(w, http.StatusOK, u)
}

func (s *server) createUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body is not a JSON object")
		return
	}
	if in.Name == "" || len(in.Name) > 200 {
		writeError(w, http.StatusBadRequest, "name must be 1 to 200 bytes")
		return
	}
	if at := strings.IndexByte(in.Email, '@'); at < 1 || at == len(in.Email)-1 || len(in.Email) > 254 {
		writeError(w, http.StatusBadRequest, "email is not an address")
		return
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	u := user{ID: newUUID(), Name: in.Name, Email: in.Email,
		CreatedAt: now.Format(timeLayout), UpdatedAt: now.Format(timeLayout)}
	_, err := s.insert.ExecContext(r.Context(), u.ID, u.Name, u.Email, now, now)
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "23505" {
		writeError(w, http.StatusConflict, "a user with this email already exists")
		return
	}
	if err != nil {
		log.Printf("create: %v", err)
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	w.Header().Set("Location", "/v1/users/"+u.ID)
	writeJSON(w, http.StatusCreated, u)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/users" && r.Method == http.MethodPost:
		s.createUser(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/users/") && r.Method == http.MethodGet:
		s.getUser(w, r, strings.TrimPrefix(r.URL.Path, "/v1/users/"))
	case r.URL.Path == "/healthz":
		w.Write([]byte("ok\n"))
	default:
		writeError(w, http.StatusNotFound, "no such route")
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP address")
	url := flag.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL")
	pool := flag.Int("pool", 16, "database connections")
	flag.Parse()

	db, err := sql.Open("postgres", *url)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(*pool)
	db.SetMaxIdleConns(*pool)
	if err := db.Ping(); err != nil {
		log.Fatal(err)
	}
	s := &server{}
	if s.get, err = db.Prepare(`SELECT id::text, name, email, created_at, updated_at FROM users WHERE id = $1`); err != nil {
		log.Fatal(err)
	}
	if s.insert, err = db.Prepare(`INSERT INTO users (id, name, email, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)`); err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(*listen, s))
}
