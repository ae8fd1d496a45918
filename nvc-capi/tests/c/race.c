/* Frees racing every call on the same object, from other threads: each call runs before the
 * free or is refused, never a crash, and a freed handle stays refused:  race ROOT ROOTFS */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nvc.h"

#define THREADS 4
#define ROUNDS 100
#define CALLS 50

static int failures;
static struct nvc_context *ctx;

#define EXPECT(cond) do { if (!(cond)) { \
        fprintf(stderr, "line %d: %s\n", __LINE__, #cond); \
        __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED); } } while (0)

/* Containers made from a configuration that another thread frees. */
static void *make_containers(void *arg)
{
        struct nvc_container_config *ccfg = arg;

        for (int i = 0; i < CALLS; ++i) {
                struct nvc_container *cnt = nvc_container_new(ctx, ccfg, "supervised utility");
                nvc_container_free(cnt);
        }
        return (NULL);
}

/* Calls that read a container (its libs, its configuration) that another thread frees:
 * the device is not the library's, so each is refused after reading it. */
static void *use_container(void *arg)
{
        struct nvc_container *cnt = arg;
        struct nvc_device fake;

        memset(&fake, 0, sizeof(fake));
        for (int i = 0; i < CALLS; ++i)
                EXPECT(nvc_device_mount(ctx, cnt, &fake) == -1);
        return (NULL);
}

static void race(void *(*body)(void *), void *obj, void (*release)(void *))
{
        pthread_t threads[THREADS];

        for (int i = 0; i < THREADS; ++i)
                EXPECT(pthread_create(&threads[i], NULL, body, obj) == 0);
        usleep(100);
        release(obj);
        for (int i = 0; i < THREADS; ++i)
                pthread_join(threads[i], NULL);
}

static void free_config(void *p) { nvc_container_config_free(p); }
static void free_container(void *p) { nvc_container_free(p); }

int main(int argc, char **argv)
{
        if (argc < 3)
                return (2);
        ctx = nvc_context_new();
        struct nvc_config *cfg = nvc_config_new();
        cfg->root = argv[1];
        EXPECT(nvc_init(ctx, cfg, NULL) == 0);

        for (int round = 0; round < ROUNDS; ++round) {
                struct nvc_container_config *ccfg = nvc_container_config_new(getpid(), argv[2]);
                struct nvc_container_config *kept = nvc_container_config_new(getpid(), argv[2]);
                struct nvc_container *cnt = nvc_container_new(ctx, kept, "supervised utility");
                EXPECT(ccfg != NULL && cnt != NULL);
                race(make_containers, ccfg, free_config);
                race(use_container, cnt, free_container);
                /* Stale handles stay refused. */
                EXPECT(nvc_container_new(ctx, ccfg, "supervised utility") == NULL);
                EXPECT(strcmp(nvc_error(ctx), "invalid argument") == 0);
                EXPECT(nvc_ldcache_update(ctx, cnt) == -1);
                EXPECT(strcmp(nvc_error(ctx), "invalid argument") == 0);
                nvc_container_config_free(kept);
        }
        nvc_shutdown(ctx);
        nvc_config_free(cfg);
        nvc_context_free(ctx);
        if (failures == 0)
                printf("ok\n");
        return (failures != 0);
}
