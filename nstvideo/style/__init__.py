"""The style engine: VGG-19 features (`vgg`), the costs (`losses`), the optimizer
(`optimize`), one image's objective and its run (`stylizer`), pixel/tensor conversions
(`tensors`) and the device policy (`device`). Knows nothing of files, videos or renders."""
