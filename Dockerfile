# flowsight: one image for every role (collector, evaluator, all-in-one) and the migration Job.
# Build: docker build -t flowsight:0.1.0 .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY flowsight ./flowsight
COPY collector ./collector
COPY slo ./slo
COPY alerts ./alerts
COPY dashboards ./dashboards
# The domain packages are linked into the core package (relative links, copied with their
# targets); building the wheel follows the links.
RUN python -m venv /opt/flowsight \
 && /opt/flowsight/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app flowsight \
 && mkdir -p /app/data && chown -R flowsight:flowsight /app
COPY --from=build /opt/flowsight /opt/flowsight
ENV PATH=/opt/flowsight/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLOWSIGHT_HOST=0.0.0.0 \
    FLOWSIGHT_PORT=4318 \
    FLOWSIGHT_DATA_DIR=/app/data
WORKDIR /app
USER 10001:10001
EXPOSE 4318
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:4318/healthz').status != 200)"
ENTRYPOINT ["flowsight"]
CMD ["serve"]
