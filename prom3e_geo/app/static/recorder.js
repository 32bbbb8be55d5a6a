// The explorer's recording worklet: hands each block of the microphone's first channel
// (float samples at the context's rate) to the page, which writes them into a WAV file.
"use strict";

class PcmTap extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("pcm-tap", PcmTap);
