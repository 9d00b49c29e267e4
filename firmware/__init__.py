"""l1ad.firmware: the quantized-model IR, bit-exact emulator, HLS (hls4ml) and Verilog export, reports."""
