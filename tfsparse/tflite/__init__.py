"""Reading and rewriting `.tflite` flatbuffers without TensorFlow, and XNNPACK's sparse rules.

`flatbuffer` parses a file (operators, tensors, sparse encodings, signatures); `metadata` is
tfsparse's JSON entry inside it; `xnnpack` ports XNNPACK's NCHW (sparse) eligibility rules;
`inspector` combines them into a verdict (`tfsparse inspect`); `twin` writes the dense twin of
a sparse file (same weights, stored dense) that every emulated speedup is measured against;
`fuzz` feeds mutated files through the reader. Needs only numpy, flatbuffers and
ai-edge-litert's generated schema.
"""
