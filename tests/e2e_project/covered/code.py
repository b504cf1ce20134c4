"""Code that only a worker, or only a concurrent-call process, runs."""


def only_in_a_worker(x):
    doubled = x * 2
    return doubled + 1


def only_in_a_call(x):
    tripled = x * 3
    return tripled - 1
