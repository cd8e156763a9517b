# Decides ENGRAM_WITH_CUDA from ENGRAM_CUDA (AUTO/ON/OFF), enables the CUDA
# language when the backend is built, and defines engram_cuda_target().
#
# AUTO builds the backend when nvcc is found (CUDA's standard location, CUDA_HOME
# or PATH) and the build is not instrumented (ENGRAM_SANITIZE, ENGRAM_FUZZ: their
# flags are host-compiler flags that nvcc rejects, and an instrumented process
# cannot initialise CUDA without extra runtime options); ON requires it; OFF
# never builds it.
set(ENGRAM_WITH_CUDA OFF)
set(engram_cuda_instrumented OFF)
if(NOT ENGRAM_SANITIZE STREQUAL "" OR ENGRAM_FUZZ)
  set(engram_cuda_instrumented ON)
endif()
if(ENGRAM_CUDA STREQUAL "ON" AND engram_cuda_instrumented)
  message(FATAL_ERROR
    "ENGRAM_CUDA=ON cannot be combined with ENGRAM_SANITIZE or ENGRAM_FUZZ")
endif()
if(NOT ENGRAM_CUDA STREQUAL "OFF" AND NOT engram_cuda_instrumented)
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(ENGRAM_NVCC nvcc HINTS /usr/local/cuda/bin ENV CUDA_HOME
                 PATH_SUFFIXES bin)
    if(ENGRAM_NVCC)
      set(CMAKE_CUDA_COMPILER ${ENGRAM_NVCC})
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      # sm_90 (H100/H200) as SASS plus PTX so newer GPUs JIT it. One
      # architecture keeps CI's compile of the kernels short.
      set(CMAKE_CUDA_ARCHITECTURES 90-real 90-virtual)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(ENGRAM_WITH_CUDA ON)
  elseif(ENGRAM_CUDA STREQUAL "ON")
    message(FATAL_ERROR "ENGRAM_CUDA=ON but no nvcc was found")
  endif()
endif()
message(STATUS "Engram CUDA backend: ${ENGRAM_WITH_CUDA}")

# engram_cuda_target(<target>): our flags for a target with .cu sources: C++17
# device code, every nvcc and host-compiler warning an error (CI compiles the
# kernels on every run), and the CUDA runtime linked statically. C++ sources of
# the target get engram_target_warnings().
function(engram_cuda_target target)
  set_target_properties(${target} PROPERTIES
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_RUNTIME_LIBRARY Static)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings
      -Xcompiler=-Wall,-Wextra,-Werror,-Wno-unused-parameter>)
  engram_target_warnings(${target})
endfunction()
