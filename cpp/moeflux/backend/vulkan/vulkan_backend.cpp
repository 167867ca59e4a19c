// VulkanBackend's memory side (resident weights, empty tensors, uploads and downloads) and the
// entry points of backend/devices.h; the ops live in ops/.
#include "moeflux/backend/vulkan/vulkan_backend.h"

#include <algorithm>
#include <vector>

#include "moeflux/backend/vulkan/device_expert_cache.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/format/dtype.h"
#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"

namespace moeflux::backend {
namespace vk {
namespace {

constexpr std::size_t kWidenChunk = 1 << 22;  // elements widened on the host per upload piece

// download()'s checks: a tensor of this backend, into as many floats as it has elements.
void check_download(const Tensor& src, std::span<float> dst, const Context& context) {
  storage_of(src, context, "download", "src");
  MF_CHECK(static_cast<std::int64_t>(dst.size()) == src.numel(), ShapeError, "[download] a tensor of shape ",
           format::shape_string(src.shape()), " (", src.numel(), " elements) into ", dst.size(),
           " floats; sizes must match");
}

// A weight in its stored dtype: its bytes read back and widened exactly, as format does.
void download_weight(const Tensor& src, std::span<float> dst, Recorder& recorder) {
  const std::uint64_t bytes = format::stored_nbytes(src.dtype(), src.shape(), src.quant());
  std::vector<std::byte> raw(bytes);
  recorder.download(byte_range(src, 0, static_cast<std::int64_t>(bytes / element_bytes(src.dtype()))), raw);
  if (src.quantized()) {
    const format::QuantLayout layout = format::quant_layout(src.shape(), src.quant());
    format::dequantize_rows(raw.data(), layout, src.quant(), 0, layout.rows, dst.data());
  } else {
    format::to_f32(raw.data(), src.dtype(), dst.size(), dst.data());
  }
}

}  // namespace

VulkanBackend::VulkanBackend(const VulkanOptions& options) : context_(std::make_shared<Context>(options)) {}

VulkanBackend::~VulkanBackend() {
  try {
    context_->recorder.finish();
  } catch (const Error&) {  // a destructor cannot report; tensors still alive keep the context
  }
}

std::shared_ptr<VulkanStorage> VulkanBackend::allocate(VkDeviceSize bytes, std::string_view what) {
  const Allocation a = context_->memory.allocate(MemoryKind::device, bytes, what);
  return std::make_shared<VulkanStorage>(context_, a, bytes);
}

VulkanBackend::WeightForm VulkanBackend::weight_form(const format::TensorView& weight, std::string_view op) const {
  for (const std::int64_t d : weight.shape) {
    MF_CHECK(d >= 0, ShapeError, "[", op, "] weight '", weight.name, "' has shape ",
             format::shape_string(weight.shape), " with a negative dimension");
  }
  WeightForm form;
  form.dtype = weight.dtype;
  if (format::is_quantized(weight.dtype)) {
    MF_CHECK(weight.shape.size() == 2, ShapeError, "[", op, "] quantized weight '", weight.name, "' has shape ",
             format::shape_string(weight.shape), "; quantized tensors are [rows, cols]");
    form.quant = format::quant_params_of(weight);
    format::check_quant_params(form.quant, weight.shape[1], op);
  }
  form.bytes = format::stored_nbytes(weight.dtype, weight.shape, form.quant);
  if ((weight.dtype == Dtype::f16 || weight.dtype == Dtype::bf16) && !device().features().storage16) {
    form.dtype = Dtype::f32;  // no 16-bit storage: widened on the host so every shader reads f32
    form.bytes = static_cast<std::uint64_t>(weight.numel()) * sizeof(float);
  }
  return form;
}

Tensor VulkanBackend::weight_tensor(std::shared_ptr<VulkanStorage> storage, const WeightForm& form,
                                    const Shape& shape) const {
  return format::is_quantized(form.dtype) ? Tensor(std::move(storage), form.dtype, shape, form.quant)
                                          : Tensor(std::move(storage), form.dtype, shape);
}

void VulkanBackend::write_weight(const format::TensorView& weight, const Tensor& t, bool on_transfer) {
  const std::uint64_t needed = format::stored_nbytes(weight.dtype, weight.shape, t.quant());
  MF_CHECK(weight.nbytes >= needed && (weight.data != nullptr || needed == 0), FormatError, "[resident] weight '",
           weight.name, "' (", format::dtype_name(weight.dtype), " ", format::shape_string(weight.shape), ") needs ",
           needed, " bytes but its view holds ", weight.data == nullptr ? 0 : weight.nbytes,
           "; check the manifest entry");
  Recorder& recorder = context_->recorder;
  auto upload = [&](std::span<const std::byte> bytes, const Binding& dst) {
    if (on_transfer) recorder.upload_transfer(bytes, dst);
    else recorder.upload(bytes, dst);
  };
  if (t.dtype() == weight.dtype) {  // the stored bytes as they are: f32, 16-bit with 16-bit storage, quantized
    if (needed > 0) {
      const auto count = static_cast<std::int64_t>(needed / element_bytes(weight.dtype));
      upload(std::span(weight.data, needed), byte_range(t, 0, count));
    }
    return;
  }
  const std::int64_t n = weight.numel();
  std::vector<float> piece(std::min<std::size_t>(kWidenChunk, static_cast<std::size_t>(n)));
  const std::size_t es = format::dtype_size(weight.dtype);
  for (std::int64_t begin = 0; begin < n; begin += static_cast<std::int64_t>(piece.size())) {
    const auto count = std::min<std::size_t>(piece.size(), static_cast<std::size_t>(n - begin));
    format::to_f32(weight.data + static_cast<std::size_t>(begin) * es, weight.dtype, count, piece.data());
    upload(std::as_bytes(std::span(piece.data(), count)), byte_range(t, begin, static_cast<std::int64_t>(count)));
  }
}

Tensor VulkanBackend::resident(const format::TensorView& weight) {
  const WeightForm form = weight_form(weight, "resident");
  const Tensor t = weight_tensor(allocate(form.bytes, weight.name), form, weight.shape);
  write_weight(weight, t);
  return t;
}

Tensor VulkanBackend::empty(Shape shape) {
  for (const std::int64_t d : shape) {
    MF_CHECK(d >= 0, ShapeError, "[empty] shape ", format::shape_string(shape), " has a negative dimension");
  }
  const auto bytes = static_cast<VkDeviceSize>(format::element_count(shape)) * sizeof(float);
  return Tensor(allocate(bytes, "an activation"), Dtype::f32, std::move(shape));
}

const Tensor& VulkanBackend::zeroed_counters(Tensor& counters, std::int64_t n) {
  if (!counters.defined() || counters.numel() < n) {
    counters = empty({n});
    upload(std::vector<float>(static_cast<std::size_t>(n), 0.0f), counters);  // the bits of 0u
  }
  return counters;
}

void VulkanBackend::upload(std::span<const float> src, Tensor& dst) {
  f32_storage_of(dst, *context_, "upload", "dst");
  MF_CHECK(static_cast<std::int64_t>(src.size()) == dst.numel(), ShapeError, "[upload] ", src.size(),
           " floats into a tensor of shape ", format::shape_string(dst.shape()), " (", dst.numel(),
           " elements); sizes must match");
  if (!src.empty()) context_->recorder.upload(std::as_bytes(src), byte_range(dst, 0, dst.numel()));
}

void VulkanBackend::download(const Tensor& src, std::span<float> dst) {
  const TensorDownload one{&src, dst};
  download_all(std::span(&one, 1));
}

void VulkanBackend::download_all(std::span<const TensorDownload> items) {
  for (const TensorDownload& item : items) {  // every check before anything runs
    MF_ASSERT(item.src != nullptr, "download_all of a null tensor");
    check_download(*item.src, item.dst, *context_);
  }
  // float32 tensors in one submit and wait; weights in their stored dtype one by one.
  Recorder& recorder = context_->recorder;
  std::vector<Binding> srcs;
  std::vector<std::span<std::byte>> dsts;
  for (const TensorDownload& item : items) {
    const Tensor& src = *item.src;
    if (src.numel() == 0) continue;
    if (src.dtype() == Dtype::f32) {
      srcs.push_back(byte_range(src, 0, src.numel()));
      dsts.push_back(std::as_writable_bytes(item.dst));
    } else {
      download_weight(src, item.dst, recorder);
    }
  }
  if (!srcs.empty()) recorder.download(srcs, dsts);
}

}  // namespace vk

std::vector<DeviceInfo> list_devices() {
  std::unique_ptr<vk::Instance> instance;
  try {
    instance = std::make_unique<vk::Instance>(false);
  } catch (const DeviceError&) {  // no Vulkan driver at all: no devices
    return {};
  }
  std::vector<DeviceInfo> out;
  const std::vector<VkPhysicalDevice> devices = instance->physical_devices();
  for (std::size_t i = 0; i < devices.size(); ++i) out.push_back(vk::describe_device(devices[i], static_cast<int>(i)));
  return out;
}

std::unique_ptr<Backend> create_vulkan_backend(const BackendOptions& options) {
  return std::make_unique<vk::VulkanBackend>(vk::options_from_environment(options.device));
}

}  // namespace moeflux::backend
