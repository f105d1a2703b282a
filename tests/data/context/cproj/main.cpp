#include "include/vec.h"
#include <cstdio>

namespace app {
class Runner {
public:
    int run(int n);
};

int Runner::run(int n) {
    struct vec v;
    return vec_push(&v, n) + VEC_CAP;
}
}
