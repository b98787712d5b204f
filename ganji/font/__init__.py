"""`ganji font`: fake kanji as an installable font. select.py chooses the samples, trace.py turns
each into outlines, build.py writes and checks the font, render.py draws it back and measures, and
make.py runs those stages in order."""
