# The image compose.yaml builds: the package and its `cx` command, nothing of the working tree else.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot bot
COPY handlers handlers
COPY pipelines pipelines
COPY db db
COPY prompts prompts
COPY samples samples
RUN pip install --no-cache-dir .
ENV LOG_FORMAT=json
EXPOSE 8080
CMD ["cx", "run"]
