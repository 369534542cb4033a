"""The networks, their input path (device, precision, scaling, flip axis, forward) and augmentation."""
