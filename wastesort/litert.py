"""The exported TFLite files under LiteRT (``ai-edge-litert``), with no TensorFlow import.

``LiteModel`` runs a float32 or a full-integer (uint8 in, uint8 out) file on batches of
resized images in [0, 255] and returns float32 probabilities either way, quantizing the input
and dequantizing the output with the scale and zero point the file records.
"""

from __future__ import annotations

import threading

import numpy as np


class LiteModel:
    def __init__(self, content: bytes, num_threads: int = 2):
        self._content, self._threads = content, num_threads
        self._interpreter = self._new_interpreter()
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        self._input, self._output = inp["index"], out["index"]
        self.input_dtype, self.input_quantization = np.dtype(inp["dtype"]), inp["quantization"]
        self.output_dtype, self.output_quantization = np.dtype(out["dtype"]), out["quantization"]
        self.input_size = (int(inp["shape"][1]), int(inp["shape"][2]))  # height, width
        self.n_outputs = int(out["shape"][-1])
        self._batch = 0
        self._lock = threading.Lock()

    def _new_interpreter(self):
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=self._content, num_threads=self._threads)

    def release(self, above: int = 1) -> bool:
        """Give back the memory of a batch of more than ``above`` rows: LiteRT keeps its tensor
        arena at the largest batch it ran, resizing down does not shrink it, so a fresh
        interpreter replaces it (tens of milliseconds). True if it did."""
        with self._lock:
            if self._batch <= above:
                return False
            self._interpreter, self._batch = self._new_interpreter(), 0
            return True

    def quantize(self, batch: np.ndarray) -> np.ndarray:
        if self.input_dtype == np.float32:
            return np.ascontiguousarray(batch, dtype=np.float32)
        scale, zero = self.input_quantization
        info = np.iinfo(self.input_dtype)
        q = np.round(np.asarray(batch, np.float32) / np.float32(scale)) + zero
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        if self.output_dtype == np.float32:
            return out.astype(np.float32, copy=True)
        scale, zero = self.output_quantization
        return (out.astype(np.float32) - np.float32(zero)) * np.float32(scale)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of height x width x 3 images in [0, 255]; thread-safe."""
        if len(batch) == 0:
            return np.zeros((0, self.n_outputs), np.float32)
        data = self.quantize(batch)
        with self._lock:
            if data.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input, data.shape)
                self._interpreter.allocate_tensors()
                self._batch = data.shape[0]
            self._interpreter.set_tensor(self._input, data)
            self._interpreter.invoke()
            return self.dequantize(self._interpreter.get_tensor(self._output))

    def predict_in_chunks(self, batch: np.ndarray, chunk: int = 32) -> np.ndarray:
        parts = [self.predict(batch[i : i + chunk]) for i in range(0, len(batch), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_outputs), np.float32)
