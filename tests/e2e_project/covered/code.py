"""Code that only a worker, or only a concurrent-call process, runs; each
function has both sides of a branch taken, for branch coverage."""


def only_in_a_worker(x):
    if x > 0:
        return x * 2 + 1
    return -1


def only_in_a_call(x):
    if x > 0:
        return x * 3 - 1
    return -1
