#include "include/vec.h"

int vec_push(struct vec *v, int x) {
    v->data[v->len++] = x;
    return v->len;
}
