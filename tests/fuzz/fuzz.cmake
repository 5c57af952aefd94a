# tests/fuzz/fuzz.cmake — the libFuzzer targets (tests/fuzz/fuzz_*.c), included by the
# top-level CMakeLists.txt. Why a separate file: the fuzz build is its own configuration
# (clang, usually with -DETX_SANITIZE=ON) and keeping it here leaves the main build file
# as it was.
#
# ETX_FUZZ: ON by default when the C compiler is clang and a program built with
# -fsanitize=fuzzer links (Debian: libclang-rt-14-dev); otherwise the targets are simply
# not built. With it, the host library (etx_core) gets coverage instrumentation
# (-fsanitize=fuzzer-no-link) so the fuzzers see inside the parsers, and every
# tests/fuzz/fuzz_<name>.c becomes an executable fuzz_<name>. Only build the fuzz targets
# in such a build directory (the rest of the project is not meant to be built there):
#
#     CC=clang cmake -S . -B build-fuzz -DETX_FUZZ=ON -DETX_SANITIZE=ON
#     cmake --build build-fuzz -j2 --target fuzz_all
#
# tests/fuzz/run_fuzz.sh runs them (CI's short pass); scripts/fuzz_campaign.sh the long one.

include(CheckCSourceCompiles)
set(ETX_FUZZ_AVAILABLE OFF)
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
  check_c_source_compiles([[
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) { (void)d; (void)n; return 0; }
]] ETX_LIBFUZZER_LINKS)
  unset(CMAKE_REQUIRED_FLAGS)
  set(ETX_FUZZ_AVAILABLE ${ETX_LIBFUZZER_LINKS})
endif()
option(ETX_FUZZ "build the libFuzzer targets of tests/fuzz (needs clang with libFuzzer)" ${ETX_FUZZ_AVAILABLE})

if(ETX_FUZZ AND NOT ETX_FUZZ_AVAILABLE)
  message(WARNING "etx: ETX_FUZZ=ON but the C compiler is not clang with libFuzzer "
                  "(CC=clang; Debian: clang libclang-rt-14-dev); fuzz targets are not built")
elseif(ETX_FUZZ)
  message(STATUS "etx: building the libFuzzer targets (tests/fuzz)")
  # coverage feedback from the library under test, not only from the harnesses
  target_compile_options(etx_core PRIVATE -fsanitize=fuzzer-no-link)

  # The few command-line files whose parsers are fuzzed (the data file's requests and
  # the resume scan, host/cli/eval.h), instrumented like the library. cli/common.c holds
  # cli_error, which eval_items.c reports with.
  # The request parser of `etx serve` (host/serve/serve_req.c) with the error JSON it
  # answers with (serve_resp.c, which writes text through cli/batch_request.c's helpers).
  add_library(etx_fuzz_cli OBJECT ${CMAKE_SOURCE_DIR}/host/cli/eval_items.c ${CMAKE_SOURCE_DIR}/host/cli/eval_io.c
                              ${CMAKE_SOURCE_DIR}/host/cli/common.c ${CMAKE_SOURCE_DIR}/host/serve/serve_req.c
                              ${CMAKE_SOURCE_DIR}/host/serve/serve_resp.c ${CMAKE_SOURCE_DIR}/host/cli/batch_request.c)
  target_compile_options(etx_fuzz_cli PRIVATE ${ETX_WARNINGS} -fsanitize=fuzzer-no-link)
  target_link_libraries(etx_fuzz_cli PUBLIC etx_core)

  # support code every target links: temporary files (util.c), the fixture tokenizers
  # (fixtures.c); the targets are the fuzz_*.c files
  set(ETX_FUZZ_SUPPORT ${CMAKE_SOURCE_DIR}/tests/fuzz/util.c ${CMAKE_SOURCE_DIR}/tests/fuzz/fixtures.c)
  file(GLOB ETX_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
  add_custom_target(fuzz_all)
  set(ETX_FUZZ_NAMES)
  foreach(src ${ETX_FUZZ_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src} ${ETX_FUZZ_SUPPORT})
    target_compile_options(${name} PRIVATE ${ETX_WARNINGS} -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/fuzz ${CMAKE_SOURCE_DIR}/host/cli)
    target_compile_definitions(${name} PRIVATE ETX_FIXTURES="${CMAKE_SOURCE_DIR}/tests/fixtures")
    target_link_libraries(${name} PRIVATE etx_fuzz_cli etx_core Threads::Threads)
    add_dependencies(fuzz_all ${name})
    list(APPEND ETX_FUZZ_NAMES ${name})
  endforeach()
  # ctest -L fuzz in this build: each target replays its seed corpus and regression
  # inputs, then fuzzes for ETX_FUZZ_SECONDS (tests/fuzz/run_fuzz.sh).
  set(ETX_FUZZ_SECONDS 30 CACHE STRING "seconds of fuzzing per target in the ctest fuzz pass")
  foreach(name ${ETX_FUZZ_NAMES})
    add_test(NAME ${name} COMMAND ${CMAKE_SOURCE_DIR}/tests/fuzz/run_fuzz.sh ${CMAKE_BINARY_DIR} ${name}
             ${ETX_FUZZ_SECONDS})
    math(EXPR t "${ETX_FUZZ_SECONDS} + 240")
    set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT ${t}
        ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  endforeach()
endif()
