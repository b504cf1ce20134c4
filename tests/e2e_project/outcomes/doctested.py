def double(x):
    """
    >>> double(2)
    4
    >>> double(3)
    6
    """
    return x * 2
