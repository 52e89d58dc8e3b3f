export { bf16ToF32, DTYPE_SIZE, f16ToF32, f32ToBf16, type SafetensorsDtype, type TensorArray, type WritableDtype } from "./dtypes";
export {
  MAX_HEADER_BYTES,
  type OpenCheckpointOptions,
  openCheckpoint,
  openSafetensors,
  parseSafetensors,
  type TensorData,
  type TensorInfo,
  type TensorSource,
} from "./reader";
export { serializeSafetensors, type TensorToWrite, writeSafetensors } from "./writer";
