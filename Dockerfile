# aggserver: one container running `aggserver serve` on port 8080.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin aggserver

# Dependencies in a layer of their own: it is rebuilt only when setup.cfg changes.
COPY pyproject.toml setup.cfg ./
RUN mkdir aggserver mockex \
    && echo '__version__ = "0"' > aggserver/__init__.py && touch mockex/__init__.py \
    && pip install . \
    && pip uninstall -y aggserver \
    && rm -rf aggserver mockex

COPY symbols.csv README.md openapi.yaml ./
COPY aggserver ./aggserver
COPY mockex ./mockex
RUN pip install --no-deps . && rm -rf build *.egg-info

USER aggserver
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
CMD ["aggserver", "serve"]
