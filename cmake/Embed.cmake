# Embed a file as a C array: cmake -DINPUT=file -DOUTPUT=file.c -DNAME=symbol -P Embed.cmake
# Writes `const unsigned char NAME[]` (NUL-terminated, for convenience) and
# `const size_t NAME_len` (the file's size without that NUL).
file(READ ${INPUT} content HEX)
string(LENGTH "${content}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE ${OUTPUT} "/* Generated from ${INPUT} by cmake/Embed.cmake; do not edit. */\n"
    "#include <stddef.h>\n"
    "const unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
    "const size_t ${NAME}_len = ${size};\n")
