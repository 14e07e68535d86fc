"""Shot boundaries with TransNetV2: small frames, the streamed network, shots from its predictions, clips
planned inside shots."""
