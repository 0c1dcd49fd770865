/*
 * axl.h: the whole public interface of libaxl.
 *
 * axl fine-tunes large language models with LoRA on top of a frozen (optionally quantized)
 * base model. This header is the manual: every type and function carries its contract.
 *
 * Conventions (ABI.md is the full contract):
 *  - Every fallible call returns an axl_status (AXL_OK == 0). On failure the out-parameters
 *    are left untouched, nothing leaks, and a message naming the problem is available from
 *    axl_last_error() (this thread) and from the handle's *_last_error() function. A call
 *    that creates a handle records its failure on the parent it was given (axl_model_load on
 *    the context, axl_lora_create/load on the model, axl_optimizer_create on the adapter,
 *    axl_trainer_create on the optimizer); calls with no handle record only the thread's.
 *    On a handle shared by several threads, read axl_last_error() (per thread): another
 *    thread's failure may replace the handle's message at any time.
 *  - Handles are opaque. Every create/load has a destroy; destroying NULL is a no-op.
 *    A child handle keeps its parents alive internally, so handles may be destroyed in any
 *    order (a LoRA adapter keeps its model alive; a trainer keeps its model, adapter and
 *    optimizer alive).
 *  - Option and result structs start with `uint32_t struct_size`. Initialise them with the
 *    matching axl_*_init() function; the library reads and writes only the bytes the caller's
 *    struct_size covers, so fields are only ever appended.
 *  - Callbacks and their user_data: the library keeps calling a callback as long as any handle
 *    that holds it lives. The context's log callback and allocator hooks are held until the
 *    context AND every handle made from it are destroyed; a trainer's progress callback until
 *    the trainer is destroyed; a model load's progress callback only during the call.
 *  - Threading: a handle is used by one thread at a time unless stated otherwise; different
 *    handles may be used from different threads. A loaded model is read-only: several threads
 *    may concurrently call axl_model_forward, axl_model_evaluate, axl_lora_create and
 *    axl_lora_load on it, and train different adapters of it with different trainers.
 *  - Strings are UTF-8 and NUL-terminated. Strings returned by the library are owned by it.
 *  - Booleans are int32_t (0 = false, nonzero = true).
 */
#ifndef AXL_H
#define AXL_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(AXL_STATIC)
#    define AXL_API
#  elif defined(AXL_BUILDING_LIBRARY)
#    define AXL_API __declspec(dllexport)
#  else
#    define AXL_API __declspec(dllimport)
#  endif
#  define AXL_CALL __cdecl
#else
#  define AXL_API __attribute__((visibility("default")))
#  define AXL_CALL
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Version                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define AXL_VERSION_MAJOR 0
#define AXL_VERSION_MINOR 1
#define AXL_VERSION_PATCH 0
/** MAJOR*10000 + MINOR*100 + PATCH, for compile-time checks. */
#define AXL_VERSION_NUMBER (AXL_VERSION_MAJOR * 10000 + AXL_VERSION_MINOR * 100 + AXL_VERSION_PATCH)
/** The ABI major: the soname is libaxl.so.<AXL_ABI_VERSION>. */
#define AXL_ABI_VERSION 0

/** Version of the library actually loaded, encoded as AXL_VERSION_NUMBER. Never fails. */
AXL_API uint32_t AXL_CALL axl_version(void);
/** Version of the loaded library as "MAJOR.MINOR.PATCH". Static storage; never NULL. */
AXL_API const char *AXL_CALL axl_version_string(void);

/* ------------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Result of every fallible call. Codes are stable forever; new ones may be added, so treat
 *  an unknown nonzero code as an error. */
typedef int32_t axl_status;

#define AXL_OK                    0
#define AXL_ERR_INVALID_ARGUMENT  1  /**< NULL pointer, out-of-range value, bad struct_size.   */
#define AXL_ERR_OUT_OF_MEMORY     2  /**< Host or device allocation failed or budget exceeded. */
#define AXL_ERR_IO                3  /**< A file could not be opened, read, written or renamed. */
#define AXL_ERR_FORMAT            4  /**< A file is malformed (safetensors, JSON, adapter...).  */
#define AXL_ERR_UNSUPPORTED       5  /**< Valid request this build or model cannot serve.       */
#define AXL_ERR_NOT_FOUND         6  /**< A named file, tensor or module does not exist.        */
#define AXL_ERR_SHAPE             7  /**< A tensor or buffer has the wrong shape or size.       */
#define AXL_ERR_NUMERIC           8  /**< NaN or Inf in loss or gradients; the step was skipped.*/
#define AXL_ERR_CANCELLED         9  /**< A callback asked to stop; state is as before the call.*/
#define AXL_ERR_BACKEND          10  /**< The compute backend (CUDA, driver) failed.           */
#define AXL_ERR_STATE            11  /**< The call is not valid in the handle's current state.  */
#define AXL_ERR_INTERNAL         12  /**< A bug in axl; please report it with the message.      */

/** Short static description of a status code ("invalid argument", ...). Never NULL. */
AXL_API const char *AXL_CALL axl_status_string(axl_status status);

/** Message of the last failed axl call on the calling thread, or "" if none failed.
 *  Valid until the next axl call on this thread; copy it if you need it longer. */
AXL_API const char *AXL_CALL axl_last_error(void);

/** Status code of the last failed axl call on the calling thread (AXL_OK if none). */
AXL_API axl_status AXL_CALL axl_last_error_code(void);

/* ------------------------------------------------------------------------------------------ */
/* Callbacks                                                                                  */
/* ------------------------------------------------------------------------------------------ */

#define AXL_LOG_ERROR 0
#define AXL_LOG_WARN  1
#define AXL_LOG_INFO  2
#define AXL_LOG_DEBUG 3

/** Log sink. `message` is valid only during the call. Called on the thread that made the axl
 *  call being logged, possibly concurrently from several threads; must not call into axl. */
typedef void (AXL_CALL *axl_log_fn)(void *user_data, int32_t level, const char *message);

/** Stages reported through axl_progress_fn. */
#define AXL_STAGE_LOAD     1  /**< Reading and converting model tensors. */
#define AXL_STAGE_FORWARD  2  /**< Forward pass of a training step (one report per layer). */
#define AXL_STAGE_BACKWARD 3  /**< Backward pass of a training step (one report per layer). */

/** What a progress callback receives. Fields may be appended (check struct_size). */
typedef struct axl_progress {
    uint32_t struct_size;
    int32_t stage;       /**< One of AXL_STAGE_*. */
    int64_t done;        /**< Units finished so far (tensors for LOAD, layers for FORWARD...). */
    int64_t total;       /**< Units in all. */
    const char *what;    /**< What is being worked on (a tensor name...), valid during the call. */
} axl_progress;

/** Progress callback: called on the thread running the long operation. Returning nonzero
 *  cancels the operation, which then fails with AXL_ERR_CANCELLED and leaves every handle as it
 *  was before the call. Must not call into axl with the handles of the running operation. */
typedef int32_t (AXL_CALL *axl_progress_fn)(void *user_data, const axl_progress *progress);

/** Host allocator hooks. Every large host buffer of the engine (weights, activations,
 *  gradients, optimizer states) goes through them. `allocate` returns memory aligned to
 *  `alignment` (a power of two, at most 4096) or NULL on failure; `deallocate` receives the size
 *  that was asked for. Both may be called from any thread that calls axl, concurrently. */
typedef struct axl_host_allocator {
    uint32_t struct_size;
    void *user_data;
    void *(AXL_CALL *allocate)(void *user_data, size_t size, size_t alignment);
    void (AXL_CALL *deallocate)(void *user_data, void *ptr, size_t size);
} axl_host_allocator;

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** A context owns the compute backend, allocators, thread count and logging. Every other
 *  handle is created from one (directly or through its parent) and keeps it alive. */
typedef struct axl_context axl_context;

#define AXL_BACKEND_AUTO 0  /**< CUDA when built with it and a device is present, else CPU. */
#define AXL_BACKEND_CPU  1
#define AXL_BACKEND_CUDA 2

/** Options of axl_context_create. Fill with axl_context_options_init, then set fields. */
typedef struct axl_context_options {
    uint32_t struct_size;
    int32_t backend;                 /**< AXL_BACKEND_*; default AXL_BACKEND_AUTO.           */
    int32_t device;                  /**< CUDA device index; default 0.                       */
    void *cuda_stream;               /**< A cudaStream_t of the caller, or NULL for our own.  */
    int32_t num_threads;             /**< CPU threads; 0 (default) = all cores.               */
    int32_t log_level;               /**< Highest AXL_LOG_* passed to log_fn; default WARN.   */
    axl_log_fn log_fn;               /**< NULL (default): no logging.                         */
    void *log_user_data;
    const axl_host_allocator *host_allocator; /**< Struct copied (its user_data is not: see the
                                                   callbacks rule above); NULL = aligned malloc. */
    uint64_t device_memory_budget;   /**< Bytes; 0 (default) = no limit.                      */
} axl_context_options;

/** Fills `opts` (of `struct_size` bytes, normally sizeof *opts) with defaults. */
AXL_API axl_status AXL_CALL axl_context_options_init(axl_context_options *opts, size_t struct_size);

/** Creates a context. `opts` may be NULL for defaults. Thread-safe. */
AXL_API axl_status AXL_CALL axl_context_create(const axl_context_options *opts, axl_context **out);

/** Releases the caller's reference; the context lives on while handles made from it live. */
AXL_API void AXL_CALL axl_context_destroy(axl_context *ctx);

/** Message of the last failed call made with this context, or "". Valid until the next
 *  failing call with this context. */
AXL_API const char *AXL_CALL axl_context_last_error(const axl_context *ctx);

/** The backend in use (AXL_BACKEND_CPU or AXL_BACKEND_CUDA). */
AXL_API axl_status AXL_CALL axl_context_backend(const axl_context *ctx, int32_t *out_backend);

/** Memory counters of a context. Set struct_size to sizeof(axl_memory_stats) before the call. */
typedef struct axl_memory_stats {
    uint32_t struct_size;
    uint64_t host_current_bytes;   /**< Host bytes held now through the context's allocator. */
    uint64_t host_peak_bytes;      /**< Highest host_current_bytes since creation/reset.     */
    uint64_t device_current_bytes;
    uint64_t device_peak_bytes;
} axl_memory_stats;

/** Fills the fields `stats->struct_size` covers (set struct_size first). */
AXL_API axl_status AXL_CALL axl_context_memory_stats(const axl_context *ctx, axl_memory_stats *stats);

/** Sets the peak counters to the current values. */
AXL_API axl_status AXL_CALL axl_context_reset_peak_memory(axl_context *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Quantization config                                                                        */
/* ------------------------------------------------------------------------------------------ */

/** How the frozen base weights are stored. Created empty (AXL_QUANT_NONE: weights kept in the
 *  checkpoint's dtype), configured with setters, read during axl_model_load only.
 *
 *  With a format set, axl_model_load quantizes the decoder's linear weights of a float
 *  checkpoint (f32/bf16/f16) one tensor at a time; the embeddings, the LM head and the norms stay
 *  in full precision. A checkpoint that transformers saved already quantized (bitsandbytes 4-bit
 *  or 8-bit, fine-grained fp8) is loaded as it is stored, with a config left at AXL_QUANT_NONE or
 *  naming the checkpoint's own format. Each format is bit-compatible with the library it comes
 *  from (docs/quantization.md). The setters reject settings that contradict each other
 *  (AXL_ERR_INVALID_ARGUMENT naming both); axl_model_load checks the rest against the model: a
 *  format other than the one a quantized checkpoint carries (AXL_ERR_INVALID_ARGUMENT) and a weight
 *  whose rows do not split into whole blocks (AXL_ERR_SHAPE, naming the tensor), before anything
 *  is quantized. */
typedef struct axl_quant_config axl_quant_config;

#define AXL_QUANT_NONE       0  /**< Keep the checkpoint dtype (f32/bf16/f16).              */
#define AXL_QUANT_NF4        1  /**< bitsandbytes NF4.                                      */
#define AXL_QUANT_FP4        2  /**< bitsandbytes FP4.                                      */
#define AXL_QUANT_INT8_ROW   3  /**< bitsandbytes int8 row-wise absmax.                     */
#define AXL_QUANT_INT4_GROUP 4  /**< torchao int4 grouped asymmetric.                       */
#define AXL_QUANT_INT8_CHAN  5  /**< torchao int8 per-channel symmetric.                    */
#define AXL_QUANT_FP8_E4M3   6  /**< fp8 e4m3 with per-output-channel scale.                */
#define AXL_QUANT_NVFP4      7  /**< NVFP4.                                                 */
#define AXL_QUANT_MXFP4      8  /**< OCP MXFP4 (MoE expert tensors only).                   */

/** Creates a quantization config holding AXL_QUANT_NONE and the defaults. Thread-safe. */
AXL_API axl_status AXL_CALL axl_quant_config_create(axl_quant_config **out);
/** Destroys the config (NULL is a no-op). Models loaded with it do not need it any more. */
AXL_API void AXL_CALL axl_quant_config_destroy(axl_quant_config *config);
/** Message of the last failure of a call on this config, or "". */
AXL_API const char *AXL_CALL axl_quant_config_last_error(const axl_quant_config *config);
/** Selects the format (AXL_QUANT_*). A format this build cannot produce: AXL_ERR_UNSUPPORTED.
 *  A block size or double quantization already set that the format cannot take:
 *  AXL_ERR_INVALID_ARGUMENT (the config is left as it was). AXL_QUANT_MXFP4 quantizes MoE expert
 *  weights only, so loading a dense model with it fails with AXL_ERR_UNSUPPORTED. */
AXL_API axl_status AXL_CALL axl_quant_config_set_format(axl_quant_config *config, int32_t format);
/** Block/group size; 0 selects the format's default (nf4/fp4 64, int4 128, nvfp4 16,
 *  mxfp4 32). nf4/fp4 take 32..4096 (powers of two), int4 32/64/128/256, nvfp4 and mxfp4 only
 *  their default; int8 row/channel and fp8 keep one scale per row and take only 0. A size the
 *  format set cannot take: AXL_ERR_INVALID_ARGUMENT. */
AXL_API axl_status AXL_CALL axl_quant_config_set_block_size(axl_quant_config *config, int32_t block_size);
/** Double quantization of the block statistics (bitsandbytes compress_statistics; nf4/fp4
 *  only: enabling it with another format set is AXL_ERR_INVALID_ARGUMENT). */
AXL_API axl_status AXL_CALL axl_quant_config_set_double_quant(axl_quant_config *config, int32_t enabled);
/** Keeps modules whose name contains `module_name` in full precision (embeddings, LM head and
 *  norms always are). The string is copied. */
AXL_API axl_status AXL_CALL axl_quant_config_add_skip_module(axl_quant_config *config, const char *module_name);

/** Weight dtypes for axl_quant_config_set_weight_dtype. */
#define AXL_WEIGHT_DTYPE_AUTO 0  /**< Each tensor's checkpoint dtype (default).               */
#define AXL_WEIGHT_DTYPE_F32  1
#define AXL_WEIGHT_DTYPE_BF16 2
#define AXL_WEIGHT_DTYPE_F16  3

/** The dtype weights are rounded through before they are quantized, as if the model had been
 *  loaded in it first (transformers' `dtype=` at from_pretrained): torchao computes its scales in
 *  that dtype and bitsandbytes records it. AXL_WEIGHT_DTYPE_* ; another value:
 *  AXL_ERR_INVALID_ARGUMENT. */
AXL_API axl_status AXL_CALL axl_quant_config_set_weight_dtype(axl_quant_config *config, int32_t dtype);

/* ------------------------------------------------------------------------------------------ */
/* Model                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** A frozen base model. Read-only after load: may be shared by many adapters, trainers and
 *  threads (forward/evaluate may run concurrently on one model). */
typedef struct axl_model axl_model;

/** Options of axl_model_load. Fill with axl_model_options_init, then set fields. */
typedef struct axl_model_options {
    uint32_t struct_size;
    const axl_quant_config *quant;   /**< NULL (default): AXL_QUANT_NONE. Read during load.    */
    axl_progress_fn progress_fn;     /**< Called once per tensor loaded; may cancel.           */
    void *progress_user_data;
} axl_model_options;

/** Fills `opts` (of `struct_size` bytes, normally sizeof *opts) with defaults. */
AXL_API axl_status AXL_CALL axl_model_options_init(axl_model_options *opts, size_t struct_size);

/** Loads a Hugging Face model directory (config.json + model.safetensors, or sharded through
 *  model.safetensors.index.json). Supported model_type: llama, mistral, qwen2, qwen3.
 *  Every file is validated; a missing tensor or unknown architecture is named in the error.
 *  With opts->quant naming a format, the decoder's linear weights are quantized on load, one
 *  tensor at a time (host memory peaks near the quantized model plus one weight in f32). A
 *  checkpoint saved quantized by transformers (bitsandbytes 4-bit or 8-bit, fine-grained fp8)
 *  loads as stored; a quant-state tensor missing is AXL_ERR_NOT_FOUND, one of the wrong size
 *  AXL_ERR_SHAPE, each naming the tensor. See axl_quant_config for the other checks. */
AXL_API axl_status AXL_CALL axl_model_load(axl_context *ctx, const char *model_dir,
                                           const axl_model_options *opts, axl_model **out);
AXL_API void AXL_CALL axl_model_destroy(axl_model *model);
/** Message of the last failure of a call on this model, or "". */
AXL_API const char *AXL_CALL axl_model_last_error(const axl_model *model);

/** Shapes and sizes of a loaded model. Set struct_size to sizeof(axl_model_info) before the call. */
typedef struct axl_model_info {
    uint32_t struct_size;
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t intermediate_size;
    int32_t num_layers;
    int32_t num_heads;
    int32_t num_kv_heads;
    int32_t head_dim;
    int32_t max_position_embeddings;
    int64_t num_parameters;          /**< Base parameters (logical elements).                 */
    uint64_t weight_bytes;           /**< Bytes the base weights occupy as stored.            */
} axl_model_info;

/** Fills the fields `info->struct_size` covers (set struct_size first). */
AXL_API axl_status AXL_CALL axl_model_get_info(const axl_model *model, axl_model_info *info);

/** Bytes of base weights the model holds in `format` (AXL_QUANT_*; AXL_QUANT_NONE counts every
 *  tensor held in a float dtype: embeddings, norms, biases, the LM head and any linear kept in
 *  full precision). Summed over all formats this is axl_model_info.weight_bytes. */
AXL_API axl_status AXL_CALL axl_model_weight_bytes(const axl_model *model, int32_t format, uint64_t *out);

/** Writes the loaded model (config, quantized and full-precision weights) to one cache file at
 *  `path`, so axl_model_load_cache maps it back without reading the checkpoint or quantizing
 *  again. The layout is the versioned flatbuffers schema src/io/model_cache.fbs plus 64-byte
 *  aligned tensor data, with a CRC-32C per tensor. Written to a temporary name and renamed:
 *  a failure never leaves a partial file at `path`. */
AXL_API axl_status AXL_CALL axl_model_save_cache(const axl_model *model, const char *path);

/** Loads a model from a cache file written by axl_model_save_cache. The file is memory-mapped
 *  and the weights are used where they lie (no copy, no quantization); the mapping lives as long
 *  as the model. Every tensor's checksum is verified: a corrupt or truncated file fails with
 *  AXL_ERR_FORMAT naming the tensor, a cache of another schema version with AXL_ERR_UNSUPPORTED.
 *  `opts` may be NULL; its quant config, if any, must not contradict the cache's format
 *  (AXL_ERR_INVALID_ARGUMENT); its progress callback is called once per tensor. */
AXL_API axl_status AXL_CALL axl_model_load_cache(axl_context *ctx, const char *path,
                                                 const axl_model_options *opts, axl_model **out);

/** The model's architecture name ("llama", "qwen3", ...). Owned by the model. */
AXL_API const char *AXL_CALL axl_model_architecture(const axl_model *model);

/* ------------------------------------------------------------------------------------------ */
/* Batches                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Label value that contributes no loss (the Hugging Face convention). */
#define AXL_IGNORE_INDEX (-100)

/** A batch of token sequences, row-major [batch_size, seq_len]. Read during the call only.
 *
 *  Targets follow the Hugging Face convention: position t is trained to predict the token at
 *  t+1. Give `labels` ([B,T], AXL_IGNORE_INDEX where no loss) or `loss_mask` ([B,T], nonzero
 *  where the token is a target), or neither (every next token is a target). Not both.
 *
 *  Packed batches: `segment_ids` ([B,T], optional) marks which sequence each token belongs to.
 *  A token attends only to earlier tokens of the same row with the same segment id, rotary
 *  positions restart at 0 where a segment starts, and no token is trained to predict the first
 *  token of the next segment. Segments must be contiguous runs within a row. */
typedef struct axl_batch {
    uint32_t struct_size;
    int32_t batch_size;
    int32_t seq_len;
    const int32_t *tokens;           /**< [B,T] token ids in [0, vocab_size).                 */
    const int32_t *labels;           /**< [B,T] or NULL.                                      */
    const int32_t *loss_mask;        /**< [B,T] or NULL.                                      */
    const int32_t *segment_ids;      /**< [B,T] or NULL (one sequence per row).               */
} axl_batch;

/** Fills `batch` (of `struct_size` bytes) with an empty batch: sizes 0, every pointer NULL. */
AXL_API axl_status AXL_CALL axl_batch_init(axl_batch *batch, size_t struct_size);

/* ------------------------------------------------------------------------------------------ */
/* LoRA adapter                                                                               */
/* ------------------------------------------------------------------------------------------ */

/** A LoRA adapter over a model's linear modules. Keeps its model alive. */
typedef struct axl_lora axl_lora;

/** Options of axl_lora_create. Fill with axl_lora_options_init, then set fields. */
typedef struct axl_lora_options {
    uint32_t struct_size;
    int32_t rank;                    /**< r; default 8.                                       */
    double alpha;                    /**< lora_alpha; default 8 (PEFT's default).             */
    double dropout;                  /**< lora_dropout in [0,1); default 0.                   */
    int32_t use_rslora;              /**< scaling = alpha/sqrt(r) instead of alpha/r.         */
    int32_t use_dora;                /**< DoRA (magnitude vector per output row).             */
    /** Comma-separated module names (suffixes such as "q_proj,v_proj") or "all-linear" (every
     *  linear of the decoder layers; never the LM head). Default "all-linear". Copied. */
    const char *target_modules;
    uint64_t seed;                   /**< Seed of the initialisation and dropout; default 0.  */
    int32_t init;                    /**< AXL_LORA_INIT_*; default AXL_LORA_INIT_DEFAULT.     */
} axl_lora_options;

#define AXL_LORA_INIT_DEFAULT  0  /**< PEFT default: A kaiming-uniform(a=sqrt(5)), B = 0.       */
#define AXL_LORA_INIT_GAUSSIAN 1  /**< A ~ normal with std 1/r (as PEFT), B = 0.             */
#define AXL_LORA_INIT_RANDOM_B 2  /**< As DEFAULT but B also kaiming-uniform (tests, warm starts). */

/** Fills `opts` (of `struct_size` bytes) with defaults: r 8, alpha 8, all-linear, PEFT init. */
AXL_API axl_status AXL_CALL axl_lora_options_init(axl_lora_options *opts, size_t struct_size);

/** Creates a freshly initialised adapter. A target name that matches no module of the model
 *  is an AXL_ERR_NOT_FOUND naming it. */
AXL_API axl_status AXL_CALL axl_lora_create(axl_model *model, const axl_lora_options *opts,
                                            axl_lora **out);

/** Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
AXL_API axl_status AXL_CALL axl_lora_load(axl_model *model, const char *adapter_dir, axl_lora **out);

/** Writes the adapter in PEFT's format into `adapter_dir` (created if missing). Each file is
 *  written to a temporary name and renamed, so a failure never leaves a partial file. */
AXL_API axl_status AXL_CALL axl_lora_save(const axl_lora *lora, const char *adapter_dir);

/** Releases the caller's reference (NULL is a no-op); optimizers and trainers built on the
 *  adapter keep it alive until they are destroyed. */
AXL_API void AXL_CALL axl_lora_destroy(axl_lora *lora);
/** Message of the last failure of a call on this adapter, or "". */
AXL_API const char *AXL_CALL axl_lora_last_error(const axl_lora *lora);

/** Number of trainable parameters of the adapter. */
AXL_API axl_status AXL_CALL axl_lora_num_parameters(const axl_lora *lora, int64_t *out);

/** Copies `src`'s trainable values (A, B, DoRA magnitudes) and its scaling (alpha, rsLoRA) into
 *  `dst`; both must belong to the same model and have the same targets, rank and DoRA setting
 *  (else AXL_ERR_SHAPE). Use it to hot-swap an adapter a server is serving with one just
 *  trained. Not while `dst` is being read by another thread. */
AXL_API axl_status AXL_CALL axl_lora_copy_from(axl_lora *dst, const axl_lora *src);

/** Merges the adapter into its base model and writes a full-precision Hugging Face model to
 *  `out_dir` (created if missing): config.json (the model's, without quantization_config) and
 *  bf16 safetensors (model.safetensors, or shards of at most 5 GB with
 *  model.safetensors.index.json) that transformers loads. Quantized weights are dequantized,
 *  then W + scaling * B A (DoRA: magnitude * (W + s B A) / ||W + s B A||_row) is rounded to
 *  bf16, one tensor at a time. Each file is written to a temporary name and renamed, so a
 *  failure never leaves a partial file. Tokenizer files are not written. */
AXL_API axl_status AXL_CALL axl_lora_merge_and_export(const axl_lora *lora, const char *out_dir);

/* ------------------------------------------------------------------------------------------ */
/* Forward and evaluation                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** Runs the model (with `lora` applied, or the bare base if NULL; dropout off) and writes the
 *  fp32 logits of the selected positions to `logits`, row after row. `positions` holds
 *  `num_positions` flat indices b*seq_len+t; NULL selects every position in order. `logits`
 *  must hold num_positions*vocab_size floats (`logits_len` is checked). Thread-safe on a shared
 *  model as long as each thread passes its own adapter or an adapter nobody is training. */
AXL_API axl_status AXL_CALL axl_model_forward(axl_model *model, const axl_lora *lora,
                                              const axl_batch *batch, const int64_t *positions,
                                              int64_t num_positions, float *logits,
                                              size_t logits_len);

/** Result of axl_model_evaluate. Fill with axl_eval_result_init. */
typedef struct axl_eval_result {
    uint32_t struct_size;
    double loss;                     /**< Mean cross-entropy over target tokens.              */
    int64_t num_tokens;              /**< Target tokens counted.                              */
} axl_eval_result;

/** Mean causal-LM loss of `batch` (dropout off). Fills the fields `result->struct_size` covers. */
AXL_API axl_status AXL_CALL axl_model_evaluate(axl_model *model, const axl_lora *lora,
                                               const axl_batch *batch, axl_eval_result *result);

/* ------------------------------------------------------------------------------------------ */
/* Optimizer                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/** Optimizer over an adapter's parameters; keeps the adapter alive. */
typedef struct axl_optimizer axl_optimizer;

#define AXL_OPTIMIZER_ADAMW 0

#define AXL_SCHEDULE_CONSTANT 0  /**< lr after warmup.                                        */
#define AXL_SCHEDULE_LINEAR   1  /**< Linear decay to min_lr_ratio*lr at total_steps.         */
#define AXL_SCHEDULE_COSINE   2  /**< Half-cosine decay to min_lr_ratio*lr at total_steps, held there after. */

/** Options of axl_optimizer_create. Fill with axl_optimizer_options_init, then set fields. */
typedef struct axl_optimizer_options {
    uint32_t struct_size;
    int32_t type;                    /**< AXL_OPTIMIZER_ADAMW (default).                      */
    double lr;                       /**< Peak learning rate; default 2e-4.                   */
    double beta1;                    /**< Default 0.9.                                        */
    double beta2;                    /**< Default 0.999.                                      */
    double eps;                      /**< Default 1e-8.                                       */
    double weight_decay;             /**< Decoupled (AdamW); default 0.                       */
    int32_t schedule;                /**< AXL_SCHEDULE_*; default CONSTANT.                   */
    int64_t warmup_steps;            /**< Linear warmup from 0; default 0.                    */
    int64_t total_steps;             /**< Needed by LINEAR and COSINE; default 0.             */
    double min_lr_ratio;             /**< Floor of the decay as a fraction of lr; default 0.  */
    double max_grad_norm;            /**< Global-norm clipping; 0 disables; default 1.0.      */
} axl_optimizer_options;

/** Fills `opts` (of `struct_size` bytes) with the defaults given on each field. */
AXL_API axl_status AXL_CALL axl_optimizer_options_init(axl_optimizer_options *opts, size_t struct_size);
/** Creates an optimizer (moments zeroed, step 0) over every trainable tensor of `lora`; `opts`
 *  may be NULL for defaults. A hyperparameter out of range: AXL_ERR_INVALID_ARGUMENT naming it. */
AXL_API axl_status AXL_CALL axl_optimizer_create(axl_lora *lora, const axl_optimizer_options *opts,
                                                 axl_optimizer **out);
/** Releases the caller's reference (NULL is a no-op); a trainer keeps the optimizer alive. */
AXL_API void AXL_CALL axl_optimizer_destroy(axl_optimizer *optimizer);
/** Message of the last failure of a call on this optimizer, or "". */
AXL_API const char *AXL_CALL axl_optimizer_last_error(const axl_optimizer *optimizer);

/** Tunables that may change between steps (IDs are stable and never reused). */
#define AXL_OPTIMIZER_PARAM_LR            1
#define AXL_OPTIMIZER_PARAM_WEIGHT_DECAY  2
#define AXL_OPTIMIZER_PARAM_MAX_GRAD_NORM 3

/** Sets a tunable (AXL_OPTIMIZER_PARAM_*); applies from the next update. Unknown id or a
 *  negative/non-finite value: AXL_ERR_INVALID_ARGUMENT. Not while a step runs on another thread. */
AXL_API axl_status AXL_CALL axl_optimizer_set_param(axl_optimizer *optimizer, int32_t param, double value);
/** Reads a tunable (AXL_OPTIMIZER_PARAM_*) into `value`. */
AXL_API axl_status AXL_CALL axl_optimizer_get_param(const axl_optimizer *optimizer, int32_t param, double *value);

/** Learning rate the schedule gives at optimizer step `step` (0-based). */
AXL_API axl_status AXL_CALL axl_optimizer_lr_at(const axl_optimizer *optimizer, int64_t step, double *lr);

/* ------------------------------------------------------------------------------------------ */
/* Trainer                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Runs training steps of an adapter over its model. Keeps model, adapter and optimizer alive.
 *  While a trainer trains an adapter, that adapter must not be used by other threads. */
typedef struct axl_trainer axl_trainer;

/** Values of axl_trainer_options::gradient_checkpointing: what a training step keeps of each
 *  decoder layer between its forward and its backward. AXL_CHECKPOINT_LAYERS_OFFLOAD keeps the
 *  layer inputs in pinned (page-locked) host memory instead of device memory on the CUDA backend:
 *  each is copied to the host during the forward and back during the backward of the layer
 *  after it, on a second stream overlapped with the compute, so the device memory of a step no
 *  longer grows with the number of layers. Results are those of AXL_CHECKPOINT_LAYERS (the same
 *  kernels on the same data; axl_trainer_step says how reproducible a CUDA step is).
 *  The pinned buffers (tokens x hidden_size bf16 values per layer) are allocated by the CUDA
 *  driver, not through the context's host allocator hooks, kept for the next steps and freed
 *  with the trainer; failing to get them is AXL_ERR_OUT_OF_MEMORY. On the CPU backend it
 *  behaves as AXL_CHECKPOINT_LAYERS. */
#define AXL_CHECKPOINT_NONE           0  /**< Keep every activation; no recomputation.      */
#define AXL_CHECKPOINT_LAYERS         1  /**< Keep each layer's input; recompute the layer.  */
#define AXL_CHECKPOINT_LAYERS_OFFLOAD 2  /**< As LAYERS, the inputs in pinned host memory.   */

/** Options of axl_trainer_create. Fill with axl_trainer_options_init, then set fields. */
typedef struct axl_trainer_options {
    uint32_t struct_size;
    int32_t grad_accum_steps;        /**< Micro-batches per optimizer step; default 1.        */
    int32_t gradient_checkpointing;  /**< AXL_CHECKPOINT_*; default AXL_CHECKPOINT_LAYERS.   */
    axl_progress_fn progress_fn;     /**< Per-layer progress of each step; may cancel.        */
    void *progress_user_data;
} axl_trainer_options;

/** Fills `opts` (of `struct_size` bytes) with defaults: no accumulation, AXL_CHECKPOINT_LAYERS. */
AXL_API axl_status AXL_CALL axl_trainer_options_init(axl_trainer_options *opts, size_t struct_size);
/** Creates a trainer for the optimizer's adapter and model; `opts` may be NULL for defaults.
 *  grad_accum_steps below 1, or a gradient_checkpointing that is not an AXL_CHECKPOINT_* value:
 *  AXL_ERR_INVALID_ARGUMENT. The progress callback and its user_data must stay valid until the
 *  trainer is destroyed. */
AXL_API axl_status AXL_CALL axl_trainer_create(axl_optimizer *optimizer, const axl_trainer_options *opts,
                                               axl_trainer **out);
/** Destroys the trainer (NULL is a no-op); unapplied accumulated gradients are dropped. */
AXL_API void AXL_CALL axl_trainer_destroy(axl_trainer *trainer);
/** Message of the last failure of a call on this trainer, or "". */
AXL_API const char *AXL_CALL axl_trainer_last_error(const axl_trainer *trainer);

/** Result of axl_trainer_step. Fill with axl_step_result_init. */
typedef struct axl_step_result {
    uint32_t struct_size;
    double loss;                     /**< Mean loss over this micro-batch's target tokens.    */
    double grad_norm;                /**< Global norm before clipping (NaN if no update).     */
    double lr;                       /**< LR used by the update (NaN if no update).           */
    int64_t num_tokens;              /**< Target tokens in this micro-batch.                  */
    int64_t optimizer_step;          /**< Optimizer steps taken so far, after this call.      */
    int32_t updated;                 /**< 1 if this call applied an optimizer update.         */
} axl_step_result;

/** Forward and backward of one micro-batch; every grad_accum_steps-th call also clips and
 *  applies the optimizer update. The loss of an accumulation window is normalised by the total
 *  number of target tokens in the window (as if it were one large batch).
 *  A NaN/Inf loss or gradient fails with AXL_ERR_NUMERIC and discards the window's gradients
 *  (adapter and optimizer unchanged). Cancelled by the progress callback: AXL_ERR_CANCELLED,
 *  this micro-batch's gradients discarded. `result` may be NULL when the numbers are not wanted.
 *  On the CUDA backend the attention backward adds its query gradients from many thread blocks
 *  in f32 in whatever order they finish, so the gradients of two runs over the same data can
 *  differ in their last bits, and so can the losses of the steps after the first update. */
AXL_API axl_status AXL_CALL axl_trainer_step(axl_trainer *trainer, const axl_batch *batch,
                                             axl_step_result *result);

/** Zeroes the partial accumulation window (gradients of micro-batches not yet applied). */
AXL_API axl_status AXL_CALL axl_trainer_discard_gradients(axl_trainer *trainer);

/** Result structs: fill defaults (struct_size set, numbers zero). */
AXL_API axl_status AXL_CALL axl_step_result_init(axl_step_result *result, size_t struct_size);
AXL_API axl_status AXL_CALL axl_eval_result_init(axl_eval_result *result, size_t struct_size);

#ifdef __cplusplus
}
#endif

#endif /* AXL_H */
