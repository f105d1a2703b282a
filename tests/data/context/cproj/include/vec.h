#ifndef VEC_H
#define VEC_H
#define VEC_CAP 16

/* A growable vector of ints. */
struct vec {
    int *data;
    int len;
};

int vec_push(struct vec *v, int x);
#endif
