/* SPDX-License-Identifier: MIT */
/* Unit tests of host facts: cpuinfo and meminfo parsing and the accelerator choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/host.h"

/* The cpuinfo of the machine these tests were written on: a VM on AMD EPYC, "hypervisor" flag,
 * no svm (nested virtualization is off), two CPUs in one package. */
static const char cpuinfo_this_host[] =
    "processor\t: 0\n"
    "vendor_id\t: AuthenticAMD\n"
    "cpu family\t: 26\n"
    "model\t\t: 2\n"
    "model name\t: AMD EPYC\n"
    "stepping\t: 1\n"
    "microcode\t: 0x1000065\n"
    "cpu MHz\t\t: 2596.098\n"
    "cache size\t: 1024 KB\n"
    "physical id\t: 0\n"
    "siblings\t: 2\n"
    "core id\t\t: 0\n"
    "cpu cores\t: 2\n"
    "apicid\t\t: 0\n"
    "initial apicid\t: 0\n"
    "fpu\t\t: yes\n"
    "fpu_exception\t: yes\n"
    "cpuid level\t: 28\n"
    "wp\t\t: yes\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
    "mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
    "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor "
    "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall "
    "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq adx smap avx512ifma "
    "clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni "
    "avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq "
    "avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm avx512_vp2intersect\n"
    "bugs\t\t: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso "
    "spectre_v2_user\n"
    "bogomips\t: 5192.19\n"
    "TLB size\t: 192 4K pages\n"
    "clflush size\t: 64\n"
    "cache_alignment\t: 64\n"
    "address sizes\t: 48 bits physical, 48 bits virtual\n"
    "power management:\n"
    "\n"
    "processor\t: 1\n"
    "vendor_id\t: AuthenticAMD\n"
    "cpu family\t: 26\n"
    "model\t\t: 2\n"
    "model name\t: AMD EPYC\n"
    "stepping\t: 1\n"
    "microcode\t: 0x1000065\n"
    "cpu MHz\t\t: 2596.098\n"
    "cache size\t: 1024 KB\n"
    "physical id\t: 0\n"
    "siblings\t: 2\n"
    "core id\t\t: 1\n"
    "cpu cores\t: 2\n"
    "apicid\t\t: 1\n"
    "initial apicid\t: 1\n"
    "fpu\t\t: yes\n"
    "fpu_exception\t: yes\n"
    "cpuid level\t: 28\n"
    "wp\t\t: yes\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
    "mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
    "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor "
    "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall "
    "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq adx smap avx512ifma "
    "clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni "
    "avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq "
    "avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm avx512_vp2intersect\n"
    "bugs\t\t: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso "
    "spectre_v2_user\n"
    "bogomips\t: 5192.19\n"
    "TLB size\t: 192 4K pages\n"
    "clflush size\t: 64\n"
    "cache_alignment\t: 64\n"
    "address sizes\t: 48 bits physical, 48 bits virtual\n"
    "power management:\n"
    "\n";

/* One processor block of a two-socket Intel Xeon host with VT-x; the physical id varies. */
#define XEON_CPU(n, pkg, core)                                                                     \
    "processor\t: " #n "\n"                                                                        \
    "vendor_id\t: GenuineIntel\n"                                                                  \
    "cpu family\t: 6\n"                                                                            \
    "model\t\t: 79\n"                                                                              \
    "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n"                                    \
    "stepping\t: 1\n"                                                                              \
    "microcode\t: 0xb000040\n"                                                                     \
    "cpu MHz\t\t: 1200.152\n"                                                                      \
    "cache size\t: 35840 KB\n"                                                                     \
    "physical id\t: " #pkg "\n"                                                                    \
    "siblings\t: 2\n"                                                                              \
    "core id\t\t: " #core "\n"                                                                     \
    "cpu cores\t: 2\n"                                                                             \
    "apicid\t\t: " #n "\n"                                                                         \
    "initial apicid\t: " #n "\n"                                                                   \
    "fpu\t\t: yes\n"                                                                               \
    "fpu_exception\t: yes\n"                                                                       \
    "cpuid level\t: 20\n"                                                                          \
    "wp\t\t: yes\n"                                                                                \
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "  \
    "dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc "           \
    "arch_perfmon "                                                                                \
    "pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor "  \
    "ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe "    \
    "popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault "   \
    "epb cat_l3 cdp_l3 invpcid_single pti intel_ppin ssbd ibrs ibpb stibp tpr_shadow vnmi "        \
    "flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm "   \
    "cqm rdt_a rdseed adx smap intel_pt xsaveopt cqm_llc cqm_occup_llc cqm_mbm_total "             \
    "cqm_mbm_local dtherm ida arat pln pts md_clear flush_l1d\n"                                   \
    "vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb "            \
    "flexpriority apicv tsc_offset vtpr mtf vapic ept vpid unrestricted_guest vapic_reg vid ple "  \
    "shadow_vmcs pml\n"                                                                            \
    "bugs\t\t: cpu_meltdown spectre_v1 spectre_v2 spec_store_bypass l1tf mds swapgs taa "          \
    "itlb_multihit "                                                                               \
    "mmio_stale_data\n"                                                                            \
    "bogomips\t: 4800.16\n"                                                                        \
    "clflush size\t: 64\n"                                                                         \
    "cache_alignment\t: 64\n"                                                                      \
    "address sizes\t: 46 bits physical, 48 bits virtual\n"                                         \
    "power management:\n"                                                                          \
    "\n"

static const char cpuinfo_xeon[] =
    XEON_CPU(0, 0, 0) XEON_CPU(1, 0, 1) XEON_CPU(2, 1, 0) XEON_CPU(3, 1, 1);

/* A desktop AMD Ryzen with AMD-V ("svm" is the last flag of its line here). */
static const char cpuinfo_ryzen[] =
    "processor\t: 0\n"
    "vendor_id\t: AuthenticAMD\n"
    "cpu family\t: 25\n"
    "model\t\t: 33\n"
    "model name\t: AMD Ryzen 7 5800X 8-Core Processor\n"
    "physical id\t: 0\n"
    "siblings\t: 2\n"
    "core id\t\t: 0\n"
    "cpu cores\t: 1\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
    "mmx "
    "fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 sse4_1 "
    "sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm\n"
    "bogomips\t: 7600.11\n"
    "\n"
    "processor\t: 1\n"
    "vendor_id\t: AuthenticAMD\n"
    "model name\t: AMD Ryzen 7 5800X 8-Core Processor\n"
    "physical id\t: 0\n"
    "core id\t\t: 0\n"
    "flags\t\t: svm fpu vme de pse tsc msr pae mce cx8\n"
    "\n";

/* "vmx" and "svm" appear only inside longer words: that is no hardware virtualization. */
static const char cpuinfo_substrings[] =
    "processor\t: 0\n"
    "model name\t: Fake CPU\n"
    "physical id\t: 0\n"
    "flags\t\t: fpu vmxfoo xvmx svm_lock svmx vmx_flags nosvm\n"
    "vmx flags\t: vnmi ept\n"
    "\n";

/* An arm64 host: no "physical id", no "model name", no vmx/svm. */
static const char cpuinfo_arm[] = "processor\t: 0\n"
                                  "BogoMIPS\t: 50.00\n"
                                  "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
                                  "CPU implementer\t: 0x41\n"
                                  "CPU part\t: 0xd0c\n"
                                  "\n"
                                  "processor\t: 1\n"
                                  "BogoMIPS\t: 50.00\n"
                                  "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
                                  "\n";

static void test_cpuinfo_xeon_vmx(void **state)
{
    (void)state;
    struct host_info h;
    memset(&h, 0xa5, sizeof(h));
    host_parse_cpuinfo(cpuinfo_xeon, &h);
    assert_int_equal(h.cpus, 4);
    assert_int_equal(h.sockets, 2);
    assert_true(h.hw_virt);
    assert_string_equal(h.cpu_model, "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz");
}

static void test_cpuinfo_ryzen_svm(void **state)
{
    (void)state;
    struct host_info h = {0};
    host_parse_cpuinfo(cpuinfo_ryzen, &h);
    assert_int_equal(h.cpus, 2);
    assert_int_equal(h.sockets, 1);
    assert_true(h.hw_virt);
    assert_string_equal(h.cpu_model, "AMD Ryzen 7 5800X 8-Core Processor");
}

static void test_cpuinfo_this_host_no_virt(void **state)
{
    (void)state;
    struct host_info h = {0};
    host_parse_cpuinfo(cpuinfo_this_host, &h);
    assert_int_equal(h.cpus, 2);
    assert_int_equal(h.sockets, 1);
    assert_false(h.hw_virt);
    assert_string_equal(h.cpu_model, "AMD EPYC");
}

static void test_cpuinfo_substrings_do_not_count(void **state)
{
    (void)state;
    struct host_info h = {0};
    host_parse_cpuinfo(cpuinfo_substrings, &h);
    assert_int_equal(h.cpus, 1);
    assert_false(h.hw_virt);
}

static void test_cpuinfo_arm_and_empty(void **state)
{
    (void)state;
    struct host_info h = {0};
    host_parse_cpuinfo(cpuinfo_arm, &h);
    assert_int_equal(h.cpus, 2);
    assert_int_equal(h.sockets, 1);
    assert_false(h.hw_virt);
    assert_string_equal(h.cpu_model, "");
    host_parse_cpuinfo("", &h);
    assert_int_equal(h.cpus, 0);
    assert_int_equal(h.sockets, 0);
    /* No trailing newline, CRLF, and a line that is all garbage. */
    host_parse_cpuinfo("garbage without colon\nprocessor : 0\r\nflags : fpu vmx\r\nphysical id : x",
                       &h);
    assert_int_equal(h.cpus, 1);
    assert_true(h.hw_virt);
    assert_int_equal(h.sockets, 1);
}

static const char meminfo_this_host[] = "MemTotal:       24684092 kB\n"
                                        "MemFree:        24081828 kB\n"
                                        "MemAvailable:   24163620 kB\n"
                                        "Buffers:            6832 kB\n"
                                        "Cached:           237160 kB\n"
                                        "SwapCached:            0 kB\n"
                                        "HugePages_Total:       0\n"
                                        "Hugepagesize:       2048 kB\n";

static void test_meminfo(void **state)
{
    (void)state;
    struct host_info h = {0};
    assert_int_equal(host_parse_meminfo(meminfo_this_host, &h), 0);
    assert_int_equal(h.mem_total_mib, 24684092 / 1024);
    assert_int_equal(h.mem_avail_mib, 24163620 / 1024);
}

static void test_meminfo_old_kernel_uses_memfree(void **state)
{
    (void)state;
    struct host_info h = {0};
    assert_int_equal(host_parse_meminfo("MemTotal: 2048000 kB\nMemFree: 1024000 kB\n", &h), 0);
    assert_int_equal(h.mem_total_mib, 2000);
    assert_int_equal(h.mem_avail_mib, 1000);
}

static void test_meminfo_bad(void **state)
{
    (void)state;
    struct host_info h = {0};
    assert_int_equal(host_parse_meminfo("", &h), FERR_INVALID);
    assert_int_equal(host_parse_meminfo("MemFree: 1024 kB\n", &h), FERR_INVALID);
    assert_int_equal(host_parse_meminfo("MemTotal: lots kB\n", &h), FERR_INVALID);
    assert_int_equal(host_parse_meminfo("MemTotal: -5 kB\n", &h), FERR_INVALID);
    assert_int_equal(host_parse_meminfo("MemTotal: 1024 MB\n", &h), FERR_INVALID);
    assert_int_equal(host_parse_meminfo("MemTotal: 99999999999999999999999 kB\n", &h),
                     FERR_INVALID);
}

static void pick(bool hw_virt, bool kvm_usable, const char *forced, int want_rc,
                 const char *want_accel)
{
    struct host_info h = {.hw_virt = hw_virt, .kvm_usable = kvm_usable};
    const char *accel = NULL, *why = NULL;
    struct ferr e = {0};
    int rc = host_accel_pick(&h, forced, &accel, &why, &e);
    assert_int_equal(rc, want_rc);
    if (want_rc == 0) {
        assert_string_equal(accel, want_accel);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
    } else {
        assert_int_equal(e.code, want_rc);
        assert_non_null(strstr(e.msg, "accel"));
    }
}

static void test_loadavg(void **state)
{
    (void)state;
    double l[3];
    assert_int_equal(host_parse_loadavg("0.52 1.58 10.00 2/1011 12345\n", l), 0);
    assert_true(l[0] == 0.52 && l[1] == 1.58 && l[2] == 10.0);
    assert_int_equal(host_parse_loadavg("0 0 0 1/1 1\n", l), 0);
    assert_int_equal(host_parse_loadavg("", l), FERR_INVALID);
    assert_int_equal(host_parse_loadavg("0.52 1.58\n", l), FERR_INVALID);
    assert_int_equal(host_parse_loadavg("0.52 -1 3\n", l), FERR_INVALID);
    assert_int_equal(host_parse_loadavg("0.52x 1 3\n", l), FERR_INVALID);
}

/* The aggregate line only (cpu0... are per CPU); irq, softirq and steal are busy, iowait is
 * idle; an old kernel's 4 fields are enough. */
static void test_stat_and_busy_ratio(void **state)
{
    (void)state;
    struct host_load a = {0}, b = {0};
    const char *t1 = "cpu  100 20 30 800 50 5 5 10 0 0\ncpu0 50 10 15 400 25 2 2 5 0 0\n"
                     "intr 1 2 3\n";
    assert_int_equal(host_parse_stat(t1, 100, &a), 0);
    assert_true(a.busy_s == 1.7 && a.total_s == 10.2);
    const char *t2 = "cpu  300 20 30 1400 50 5 5 10 0 0\n";
    assert_int_equal(host_parse_stat(t2, 100, &b), 0);
    double r = host_busy_ratio(&a, &b);
    assert_true(r > 0.249 && r < 0.251); /* 200 busy ticks of 800 */
    assert_true(host_busy_ratio(&b, &a) == -1);
    assert_true(host_busy_ratio(&a, &a) == -1);
    assert_int_equal(host_parse_stat("cpu  1 2 3 4\n", 100, &a), 0);
    assert_true(a.busy_s == 0.06 && a.total_s == 0.1);
    assert_int_equal(host_parse_stat("cpu  1 2 3\n", 100, &a), FERR_INVALID);
    assert_int_equal(host_parse_stat("cpu0 1 2 3 4\n", 100, &a), FERR_INVALID);
    assert_int_equal(host_parse_stat("", 100, &a), FERR_INVALID);
    assert_int_equal(host_parse_stat(t1, 0, &a), FERR_INVALID);
    /* This host's files read. */
    struct host_load now;
    struct ferr e = {0};
    assert_int_equal(host_load_read(&now, &e), 0);
    assert_true(now.total_s > 0 && now.busy_s <= now.total_s && now.load[0] >= 0);
}

static void test_accel_auto(void **state)
{
    (void)state;
    pick(true, true, NULL, 0, "kvm");
    pick(true, true, "auto", 0, "kvm");
    pick(true, true, "", 0, "kvm");
    /* A /dev/kvm without vmx/svm is nested emulation: TCG is faster. */
    pick(false, true, NULL, 0, "tcg");
    pick(true, false, "auto", 0, "tcg");
    pick(false, false, "auto", 0, "tcg");
}

static void test_accel_forced(void **state)
{
    (void)state;
    pick(true, true, "kvm", 0, "kvm");
    pick(false, true, "kvm", 0, "kvm");
    pick(true, false, "kvm", FERR_INVALID, NULL);
    pick(false, false, "kvm", FERR_INVALID, NULL);
    pick(true, true, "tcg", 0, "tcg");
    pick(false, false, "tcg", 0, "tcg");
    pick(true, true, "xen", FERR_INVALID, NULL);
    pick(true, true, "KVM", FERR_INVALID, NULL);
}

static void test_accel_messages(void **state)
{
    (void)state;
    struct host_info h = {.hw_virt = true, .kvm_usable = false};
    const char *accel, *why;
    struct ferr e = {0};
    assert_int_equal(host_accel_pick(&h, "kvm", &accel, &why, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "/dev/kvm"));
    assert_int_equal(host_accel_pick(&h, "hvf", &accel, &why, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "\"hvf\" is not one of auto, kvm, tcg"));
    h.kvm_usable = true;
    assert_int_equal(host_accel_pick(&h, NULL, &accel, &why, &e), 0);
    assert_string_equal(why, "cpu has vmx/svm and /dev/kvm opens");
}

static void test_info_read_live(void **state)
{
    (void)state;
    struct host_info h;
    struct ferr e = {0};
    int rc = host_info_read(&h, &e);
    if (rc != 0)
        fail_msg("host_info_read: %s", e.msg);
    assert_int_equal(h.cpus, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    assert_true(h.sockets >= 1 && h.sockets <= h.cpus);
    assert_true(h.mem_total_mib > 0);
    assert_true(h.mem_avail_mib <= h.mem_total_mib);
    assert_true(strlen(h.hostname) > 0);
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    assert_int_equal(h.kvm_usable, fd >= 0);
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpuinfo_xeon_vmx),
        cmocka_unit_test(test_cpuinfo_ryzen_svm),
        cmocka_unit_test(test_cpuinfo_this_host_no_virt),
        cmocka_unit_test(test_cpuinfo_substrings_do_not_count),
        cmocka_unit_test(test_cpuinfo_arm_and_empty),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_meminfo_old_kernel_uses_memfree),
        cmocka_unit_test(test_meminfo_bad),
        cmocka_unit_test(test_loadavg),
        cmocka_unit_test(test_stat_and_busy_ratio),
        cmocka_unit_test(test_accel_auto),
        cmocka_unit_test(test_accel_forced),
        cmocka_unit_test(test_accel_messages),
        cmocka_unit_test(test_info_read_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
