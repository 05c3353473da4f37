# cmake -DSOURCE=packages/sio-steer-drain -DWORK=DIR -DOUT=DIR -DVERSION=X.Y.Z -DNPM=npm -P pack-drain.cmake
# `npm pack` of sio-steer-drain with the version of the sio-steer it ships with: a copy of the
# module (without its tests) gets that version in its package.json and is packed into
# OUT/sio-steer-drain-VERSION.tgz. The module's own files are not touched; what goes into the
# tarball is what its package.json's "files" says.
foreach(var SOURCE WORK OUT VERSION NPM)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "pack-drain.cmake: -D${var}= is missing")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
file(COPY ${SOURCE}/ DESTINATION ${WORK} PATTERN test EXCLUDE PATTERN node_modules EXCLUDE)

function(npm)
  execute_process(COMMAND ${NPM} ${ARGN} --no-audit --no-fund --loglevel=error
    WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "npm ${ARGN} in ${WORK} failed (${rc}):\n${out}${err}")
  endif()
endfunction()

npm(pkg set version=${VERSION})
file(REMOVE ${OUT}/sio-steer-drain-${VERSION}.tgz)
npm(pack --pack-destination ${OUT})
if(NOT EXISTS ${OUT}/sio-steer-drain-${VERSION}.tgz)
  message(FATAL_ERROR "npm pack made no ${OUT}/sio-steer-drain-${VERSION}.tgz")
endif()
