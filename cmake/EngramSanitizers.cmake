# Applies ENGRAM_SANITIZE to every target in the build.
if(ENGRAM_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(ENGRAM_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT ENGRAM_SANITIZE STREQUAL "")
  message(FATAL_ERROR "ENGRAM_SANITIZE must be empty, 'address' or 'thread'")
endif()
