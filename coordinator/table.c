/* table.c - aligned text tables (see table.h). Widths count UTF-8 characters, not bytes,
 * so names with accents line up. */
#include "table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct table {
    size_t columns;
    char **cells;     /* (rows + 1) * columns, row 0 the titles */
    size_t rows, cap; /* rows counts the title row */
};

static size_t width(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

table_t *table_new(size_t columns, ...)
{
    if (columns == 0 || columns > TABLE_MAX_COLUMNS)
        return NULL;
    table_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->columns = columns;
    const char *titles[TABLE_MAX_COLUMNS];
    va_list ap;
    va_start(ap, columns);
    for (size_t i = 0; i < columns; i++)
        titles[i] = va_arg(ap, const char *);
    va_end(ap);
    if (table_add_row(t, titles) < 0) {
        table_free(t);
        return NULL;
    }
    return t;
}

void table_free(table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->rows * t->columns; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

int table_add_row(table_t *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **p = realloc(t->cells, cap * t->columns * sizeof *p);
        if (!p)
            return -1;
        t->cells = p;
        t->cap = cap;
    }
    char **row = t->cells + t->rows * t->columns;
    for (size_t i = 0; i < t->columns; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            for (size_t k = 0; k < i; k++)
                free(row[k]);
            return -1;
        }
    }
    t->rows++;
    return 0;
}

int table_add(table_t *t, ...)
{
    const char *cells[TABLE_MAX_COLUMNS];
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->columns; i++)
        cells[i] = va_arg(ap, const char *);
    va_end(ap);
    return table_add_row(t, cells);
}

size_t table_rows(const table_t *t)
{
    return t->rows - 1;
}

void table_print(const table_t *t, FILE *out)
{
    size_t w[TABLE_MAX_COLUMNS] = {0};
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->columns; c++) {
            size_t n = width(t->cells[r * t->columns + c]);
            if (n > w[c])
                w[c] = n;
        }
    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->columns; c++) {
            const char *cell = t->cells[r * t->columns + c];
            if (c + 1 == t->columns) {
                fprintf(out, "%s\n", cell);
            } else {
                fprintf(out, "%s", cell);
                for (size_t k = width(cell); k < w[c] + 2; k++)
                    fputc(' ', out);
            }
        }
    }
}
