"""`vidm demo`: a Gradio page, served on this machine, for generating and extending videos.

inputs.py checks requests and uploads, results.py writes the files, app.py is the page, server.py serves it.
Only app.py and server.py need Gradio.
"""
