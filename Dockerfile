# One image for every role of the distributed deployment (api, worker, beat, bootstrap and
# the CPU simulator); docker-compose.yml picks the command. CPU build of torch.
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY models models
COPY services services
RUN pip install --no-cache-dir .
ENV LLMINS_STATE_DIR=/state LLMINS_DATA_DIR=/data LLMINS_CACHE_DIR=/state/cache
EXPOSE 8000
CMD ["python", "-m", "services.api", "--host", "0.0.0.0"]
