"""Stands in for the user's own training (not tfsparse): a Keras 3 keras.applications MobileNetV2.

    python examples/byo/train_keras3_mobilenetv2.py clothes mnv2_user.keras 8

MobileNetV2 (alpha 0.5, 64x64, `weights=None`: pretrained weights cannot be downloaded here)
with its own `Rescaling` to [-1, 1] in front, trained with plain Keras 3 (`import keras`, the
default Keras of TensorFlow 2.16+) on `<folder>/train` (10% held out for validation), scored on
`<folder>/test`, saved as a Keras 3 `.keras` file: what a user brings to `tfsparse doctor`.
BatchNorm momentum is lowered from keras.applications' 0.999 to 0.9 because 0.999 needs
thousands of steps before its moving statistics are usable in inference.
"""

import sys
import time

import keras  # Keras 3 (tfsparse is not imported: this is the user's side)

folder, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
keras.utils.set_random_seed(0)
options = dict(image_size=(64, 64), batch_size=64, label_mode="int", seed=0)
train = keras.utils.image_dataset_from_directory(f"{folder}/train", validation_split=0.1, subset="training", **options)
val = keras.utils.image_dataset_from_directory(f"{folder}/train", validation_split=0.1, subset="validation", **options)
test = keras.utils.image_dataset_from_directory(f"{folder}/test", shuffle=False, **options)

inputs = keras.Input((64, 64, 3), name="image")
scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
model = keras.applications.MobileNetV2(input_tensor=scaled, alpha=0.5, weights=None, classes=10)
for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9
augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomTranslation(0.1, 0.1)])
train = train.map(lambda x, y: (augment(x, training=True), y)).prefetch(2)
schedule = keras.optimizers.schedules.CosineDecay(2e-3, epochs * len(train))
model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.time()
model.fit(train, validation_data=val, epochs=epochs, verbose=2)
print(f"training {time.time() - start:.0f} s")
_, accuracy = model.evaluate(test, verbose=0)
print(f"user model (Keras 3) test accuracy {accuracy:.4f}")
model.save(out)
