//  validate.mjs - offline schema check of Kubernetes manifests.
//  Every document of every file named on the command line is checked
//  against the Kubernetes OpenAPI schemas bundled in the npm package
//  kubernetes-models (no cluster, no network). Exit 0 when all are valid.
//      cd compose/.validate && npm ci && node validate.mjs ../k8s/*.yaml
//  SPDX-License-Identifier: MPL-2.0
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

let failures = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
    const documents = parseAllDocuments(readFileSync(file, "utf8"));
    for (const document of documents) {
        if (document.errors.length) {
            console.error(`${file}: YAML: ${document.errors[0].message}`);
            failures++;
            continue;
        }
        const object = document.toJSON();
        if (!object)
            continue;
        const { apiVersion, kind } = object;
        const name = `${file}: ${kind} ${object.metadata?.name ?? "(no name)"}`;
        //  "apps/v1" -> kubernetes-models/apps/v1, "v1" -> kubernetes-models/v1
        let model;
        try {
            model = (await import(`kubernetes-models/${apiVersion}`))[kind];
        } catch {
            model = undefined;
        }
        if (!model) {
            console.error(`${name}: unknown apiVersion/kind ${apiVersion}/${kind}`);
            failures++;
            continue;
        }
        try {
            new model(object).validate();
            checked++;
            console.log(`ok   ${name} (${apiVersion})`);
        } catch (error) {
            console.error(`FAIL ${name}: ${error.message}`);
            failures++;
        }
    }
}
console.log(`${checked} valid, ${failures} invalid`);
process.exit(failures || !checked ? 1 : 0);
