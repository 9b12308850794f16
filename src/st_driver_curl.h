/* The libcurl driver: runs a run's jobs on a libcurl transport, at most
 * `concurrency` at once, until every job is done. Like every driver it
 * moves bytes only; the engine (st_engine.c) decides the rest. */
#ifndef ST_DRIVER_CURL_H
#define ST_DRIVER_CURL_H

#include "st_engine.h"
#include "st_transport.h"

void st_driver_curl_run(st_run *run, st_transport *t);

#endif
