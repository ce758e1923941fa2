/* table.h - aligned text tables for terminal output (sagactl): columns sized to their
 * widest cell, two spaces apart, the last column not padded.
 *
 *   table_t *t = table_new(3, "ID", "STATUS", "ERROR");
 *   table_add(t, "order-1", "stuck", "card declined");
 *   table_print(t, stdout);
 *   table_free(t);
 */
#ifndef SAGA_TABLE_H
#define SAGA_TABLE_H

#include <stddef.h>
#include <stdio.h>

#define TABLE_MAX_COLUMNS 16

typedef struct table table_t;

/* A table of columns (1..TABLE_MAX_COLUMNS) headed by the given titles (copied).
 * Returns NULL when out of memory or columns is out of range. */
table_t *table_new(size_t columns, ...);
void table_free(table_t *t);

/* Appends a row of exactly `columns` cells (copied; NULL prints as "-"). Returns 0 or -1
 * when out of memory. */
int table_add(table_t *t, ...);

/* Appends a row from an array of cells (copied; NULL prints as "-"). */
int table_add_row(table_t *t, const char *const *cells);

size_t table_rows(const table_t *t);

/* Prints the header and every row. */
void table_print(const table_t *t, FILE *out);

#endif
