"""The baseline: a Flask app calling Keras ``model.predict`` per request, the way most waste
classifier services are written. It loads the same registered version (``models:/NAME@ALIAS``
from the MLflow registry) and answers `POST /predict` (field `file`).

    python benchmarks/flask_baseline.py --port 5000   # in a repo with a champion
"""

from __future__ import annotations

import argparse
import io
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args()
    import mlflow
    import mlflow.keras
    import numpy as np
    from flask import Flask, jsonify, request
    from PIL import Image

    from wastesort.config import load_params, section
    from wastesort.tracking import tracking_uri

    register = section(load_params(), "register")
    mlflow.set_tracking_uri(tracking_uri())
    name, alias = register["model_name"], register["alias"]
    model = mlflow.keras.load_model(f"models:/{name}@{alias}")
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    labels = json.loads(version.tags["labels"])
    size = int(model.get_layer("resize").height)
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        image = Image.open(io.BytesIO(request.files["file"].read())).convert("RGB")
        x = np.asarray(image.resize((size, size), Image.BILINEAR), np.float32)[None]
        p = model.predict(x, verbose=0)[0]
        best = int(np.argmax(p))
        return jsonify(
            {"label": labels[best], "confidence": float(p[best]), "model_version": version.version}
        )

    @app.get("/ready")
    def ready():
        return "ok"

    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
