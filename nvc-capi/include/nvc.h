/*
 * nvc.h: the C API of libnvidia-container 1.17, as implemented by nvc's
 * libnvidia-container.so.1 (crate nvc-capi). Written for nvc from the documented API;
 * a program written against NVIDIA's nvc.h compiles against this one unchanged.
 *
 * Conventions
 *   - Functions taking a context return -1 (int) or NULL (pointer) on failure, with the
 *     message in nvc_error(ctx). A NULL or unknown context fails without a message.
 *   - Everything a *_new returns is freed with the matching *_free, nothing else; freeing
 *     NULL, an unknown or an already freed object does nothing.
 *   - nvc_config and nvc_container_config keep pointers to the caller's strings: keep them
 *     alive until nvc_init / nvc_container_new has returned.
 *   - nvc_nvcaps_device_from_proc_path stores a malloc()ed path the caller free()s.
 *   - Option strings are space-separated tokens, at most NVC_ARG_MAX - 1 bytes.
 *   - Calls on one context are serialised; use one context per thread for parallelism.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#ifndef HEADER_NVC_H
#define HEADER_NVC_H

#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NVC_MAJOR 1
#define NVC_MINOR 17
#define NVC_PATCH 7
#define NVC_TAG ""
#define NVC_VERSION "1.17.7"

/* The longest option string, its terminating NUL included. */
#define NVC_ARG_MAX 256

/* nvc_nvcaps_style(): how MIG capabilities are exposed. */
#define NVC_NVCAPS_STYLE_NONE 0
#define NVC_NVCAPS_STYLE_PROC 1
#define NVC_NVCAPS_STYLE_DEV  2

/* Opaque: made by nvc_context_new / nvc_container_new. */
struct nvc_context;
struct nvc_container;

struct nvc_imex_channel {
        int id;
};

struct nvc_imex_info {
        struct nvc_imex_channel *chans;
        size_t nchans;
};

struct nvc_version {
        unsigned int major;
        unsigned int minor;
        unsigned int patch;
        const char *string;
};

/* The library's configuration: driver root ("/" when NULL), ld.so.cache inside it
 * ("/etc/ld.so.cache" when NULL), the NVML helper's identity ((uid_t)-1 / (gid_t)-1: the
 * kernel's overflow ids), the IMEX channels whose nodes load-kmods makes. */
struct nvc_config {
        char *root;
        char *ldcache;
        uid_t uid;
        gid_t gid;
        struct nvc_imex_info imex;
};

struct nvc_device_node {
        char *path;
        dev_t id;
};

/* The driver's files, paths relative to the driver root. */
struct nvc_driver_info {
        char *nvrm_version;
        char *cuda_version;
        char **bins;
        size_t nbins;
        char **libs;
        size_t nlibs;
        char **libs32;
        size_t nlibs32;
        char **ipcs;
        size_t nipcs;
        struct nvc_device_node *devs;
        size_t ndevs;
        char **firmwares;
        size_t nfirmwares;
};

struct nvc_device;

struct nvc_mig_device {
        struct nvc_device *parent;
        char *uuid;
        unsigned int gi;
        unsigned int ci;
        char *gi_caps_path;
        char *ci_caps_path;
};

struct nvc_mig_device_info {
        struct nvc_mig_device *devices;
        size_t ndevices;
};

struct nvc_device {
        char *model;
        char *uuid;
        char *busid;
        char *arch;
        char *brand;
        struct nvc_device_node node;
        bool mig_capable;
        char *mig_caps_path;
        struct nvc_mig_device_info mig_devices;
};

struct nvc_device_info {
        struct nvc_device *gpus;
        size_t ngpus;
};

/* A container: its init process (pid, > 0) and root filesystem (absolute host path);
 * NULL directories are detected in the image; ldconfig "@PATH" names the host's, "builtin"
 * nvc's in-process update; NULL: what the image's own ldconfig writes, in process where the
 * image's cache names a glibc nvc is proven equal to (2.36-2.43), else that program. */
struct nvc_container_config {
        pid_t pid;
        char *rootfs;
        char *bins_dir;
        char *libs_dir;
        char *libs32_dir;
        char *cudart_dir;
        char *ldconfig;
};

const struct nvc_version *nvc_version(void);

struct nvc_context *nvc_context_new(void);
void nvc_context_free(struct nvc_context *ctx);

struct nvc_config *nvc_config_new(void);
void nvc_config_free(struct nvc_config *cfg);

/* Options: "load-kmods", "no-create-imex-channels". Probes the driver (NVML). */
int nvc_init(struct nvc_context *ctx, const struct nvc_config *cfg, const char *opts);
int nvc_shutdown(struct nvc_context *ctx);

struct nvc_container_config *nvc_container_config_new(pid_t pid, const char *rootfs);
void nvc_container_config_free(struct nvc_container_config *cfg);

/* Options: "supervised" | "standalone", "no-cgroups", "no-devbind", "utility", "compute",
 * "video", "graphics", "display", "ngx", "compat32",
 * "cuda-compat-mode=disabled|mount|ldconfig";
 * NULL: "standalone no-cgroups no-devbind utility". */
struct nvc_container *nvc_container_new(struct nvc_context *ctx,
                                        const struct nvc_container_config *cfg,
                                        const char *opts);
void nvc_container_free(struct nvc_container *cnt);

/* Options: "no-glvnd", "no-uvm", "no-modeset", "no-mps", "no-persistenced",
 * "no-fabricmanager", "no-gsp-firmware". */
struct nvc_driver_info *nvc_driver_info_new(struct nvc_context *ctx, const char *opts);
void nvc_driver_info_free(struct nvc_driver_info *info);

struct nvc_device_info *nvc_device_info_new(struct nvc_context *ctx, const char *opts);
void nvc_device_info_free(struct nvc_device_info *info);

int nvc_nvcaps_style(void);
int nvc_nvcaps_device_from_proc_path(struct nvc_context *ctx, const char *cap_path,
                                     struct nvc_device_node *node);

/* Each mount call is one transaction: on failure it undoes its own mounts and rules. */
int nvc_driver_mount(struct nvc_context *ctx, const struct nvc_container *cnt,
                     const struct nvc_driver_info *info);
int nvc_device_mount(struct nvc_context *ctx, const struct nvc_container *cnt,
                     const struct nvc_device *dev);
int nvc_mig_device_access_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt,
                                     const struct nvc_mig_device *mig);
int nvc_mig_config_global_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt);
int nvc_mig_monitor_global_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt);
int nvc_device_mig_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt,
                              const struct nvc_device *dev);
int nvc_imex_channel_mount(struct nvc_context *ctx, const struct nvc_container *cnt,
                           const struct nvc_imex_channel *chan);
int nvc_ldcache_update(struct nvc_context *ctx, const struct nvc_container *cnt);

const char *nvc_error(struct nvc_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* HEADER_NVC_H */
