/*
 * station.c: many ports at once.
 */
#include <stdio.h>

#include "athost.h"
#include "station.h"

int ath_station_main(const ath_station_opts_t *o)
{
    (void)o;
    fprintf(stderr, "athost: --ports is not available in this build\n");
    return ATH_EXIT_USAGE;
}
