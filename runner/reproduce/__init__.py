"""`runner reproduce`: a spec (or a bundle) in, a result bundle out.

dataset.py resolves and prepares the data, images.py finds each framework's image, session.py
runs the sweep (one run after another, failed runs as rows), live.py shows progress.
"""
