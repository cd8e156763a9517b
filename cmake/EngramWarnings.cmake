# engram_target_warnings(<target>): warnings as errors on our own targets only;
# generated protobuf code and third-party headers are left alone.
function(engram_target_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-unused-parameter>)
endfunction()
