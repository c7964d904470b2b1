"""What the tests and the benchmark share: throwaway databases (scratch) and a live gunicorn (gunicorn)."""
