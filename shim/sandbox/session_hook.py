"""placeholder"""
def install(rt, ctl):
    pass
