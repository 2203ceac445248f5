"""fa_lib: executable companion to A. Bulat, "Deep learning for real world face alignment" (PhD thesis,
University of Nottingham, 2019).

Every model of the thesis lives here: CALE (ch. 3), the FAN family (ch. 4), hierarchical binary
networks (ch. 5) and Super-FAN (ch. 6), with the landmark maths, data, trainer and experiments that
regenerate its tables and figures.
"""
__version__ = "0.1.0"
