# Decides ENGRAM_WITH_CUDA from ENGRAM_CUDA (AUTO/ON/OFF) and enables the CUDA
# language when the backend is built.
set(ENGRAM_WITH_CUDA OFF)
if(NOT ENGRAM_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(ENGRAM_NVCC nvcc HINTS /usr/local/cuda/bin ENV CUDA_HOME
                 PATH_SUFFIXES bin)
    if(ENGRAM_NVCC)
      set(CMAKE_CUDA_COMPILER ${ENGRAM_NVCC})
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      # sm_90 (H100/H200) as SASS plus PTX so newer GPUs JIT it.
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
