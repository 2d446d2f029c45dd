"""Graph passes and the pass manager (imported as `xchip.passes`). Nothing here yet: the optimizer arrives with the graph-passes issue."""
