/* main.c — the etx command line (being written). */
#include <stdio.h>
int main(void) { fprintf(stderr, "etx: command line not built yet\n"); return 1; }
