"""Product recipes: model, verdict rules, camera settings and budget, switched at a part boundary."""
