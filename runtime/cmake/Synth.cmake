# Runtime-only tools, included from runtime/CMakeLists.txt (no MLIR, no CLI11):
#   lathe-synth  random-weight artifacts of named model shapes (tools/Synth.cpp)
#   lathe-rt     run / bench / inspect / generate without the compiler (tools/RuntimeMain.cpp)
add_executable(lathe-synth ${CMAKE_CURRENT_LIST_DIR}/../tools/Synth.cpp)
target_compile_options(lathe-synth PRIVATE -O2)
target_link_libraries(lathe-synth PRIVATE LatheRuntime)

add_executable(lathe-rt ${CMAKE_CURRENT_LIST_DIR}/../tools/RuntimeMain.cpp)
target_compile_options(lathe-rt PRIVATE -O2)
target_link_libraries(lathe-rt PRIVATE LatheRuntime)
