/*
 * station.h: many ports at once (athost --ports): one host per port on one
 * loop, results as JSON lines and a JUnit report.
 */
#ifndef ATH_STATION_H
#define ATH_STATION_H

#include <stddef.h>

typedef struct ath_station_opts {
    const char *ports;        /* comma-separated specs */
    const char *ports_file;   /* one spec a line */
    const char *table;        /* per-port parameters, .csv or .json */
    const char *junit;        /* JUnit XML report path */
    const char *logdir;       /* one transcript per port */
    size_t log_max;           /* each transcript's size cap, 0: none */
    const char *script, *chunk, *config;
    int baud, json, quiet;
    int argc;                 /* key=value arguments for every port */
    char **argv;
} ath_station_opts_t;

/* Runs the script on every port; returns ATH_EXIT_OK when all passed. */
int ath_station_main(const ath_station_opts_t *o);

#endif
