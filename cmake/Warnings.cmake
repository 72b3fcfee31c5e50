# mesh_target_warnings(target): the house warning set, errors when MESH_WERROR.
function(mesh_target_warnings target)
    target_compile_options(${target} PRIVATE
        -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
        -Wformat=2 -Wundef -Wcast-align -Wwrite-strings -Wvla -Wnull-dereference
        -Wdouble-promotion -Wno-unused-parameter)
    if(MESH_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
    if(CMAKE_BUILD_TYPE MATCHES "Release|RelWithDebInfo")
        target_compile_options(${target} PRIVATE -D_FORTIFY_SOURCE=2 -fstack-protector-strong)
    endif()
endfunction()
