# Applies ENGRAM_SANITIZE to every target in the build.
if(ENGRAM_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12's flow analysis under the sanitizers reports std::function
    # members inside libstdc++'s std::regex as maybe uninitialized (a known
    # false positive); every other warning stays an error.
    add_compile_options(-Wno-maybe-uninitialized)
  endif()
elseif(ENGRAM_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT ENGRAM_SANITIZE STREQUAL "")
  message(FATAL_ERROR "ENGRAM_SANITIZE must be empty, 'address' or 'thread'")
endif()

if(ENGRAM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "ENGRAM_FUZZ needs clang (CXX=clang++)")
  endif()
  # Coverage instrumentation everywhere; only the fuzzer binaries link the
  # libFuzzer main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
