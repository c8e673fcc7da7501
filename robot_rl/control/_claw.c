/* The 1 kHz impedance law and its torque-side safety layer, compiled (module robot_rl.control._claw).
 *
 * A line-by-line port of the Python reference: ImpedanceLaw.compute (robot_rl/control/impedance.py),
 * Controller._joint_guards and Controller._limit_torque (robot_rl/control/controller.py); the two
 * agree to 1e-9 Nm on recorded states (tests/control/test_compiled_law.py). Nothing is allocated per
 * call: every array is a caller-owned float64 buffer read through the buffer protocol, and the
 * result is a small int (CPython's cached integers). The parameter vector's layout is P_* below,
 * packed by robot_rl/control/compiled.py (keep the two in step: the module checks its length).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

enum {
    P_K = 0, P_D = 6, P_KN = 12, P_DN = 13, P_QNULL = 14, P_MAX_POS_ERR = 21, P_MAX_ROT_ERR = 22,
    P_GRAVITY_COMP = 23, P_VEL_FF = 24, P_VGUARD = 25, P_VDAMP = 26, P_WGUARD = 27, P_WDAMP = 28,
    P_WS_LO = 29, P_WS_HI = 32, P_A2 = 35, P_CONTACT_DETECT = 36, P_MAX_CONTACT = 37,
    P_Q_LO = 38, P_Q_HI = 45, P_Q_HARD_LO = 52, P_Q_HARD_HI = 59, P_DQ_GUARD = 66, P_DQ_MAX = 73,
    P_JL_STIFF = 80, P_JV_DAMP = 81, P_STOP_DAMP = 82, P_TAU_MAX = 83, P_TORQUE_RATE = 90, P_REG = 91,
    N_PARAMS = 92
};

/* result flags (robot_rl/control/compiled.py) */
#define F_SATURATED 1
#define F_RATE_LIMITED 2
#define F_JOINT_LIMIT 4
#define F_JOINT_VELOCITY 8
/* with F_JOINT_VELOCITY, the joint that stopped the scan is flags >> 8 */
#define F_JOINT_SHIFT 8
/* per-joint joint-limit events written to `events` (float64, 7): beyond the hard limit below / above */
#define EV_NONE 0.0
#define EV_BELOW 1.0
#define EV_ABOVE 2.0

static void speed_guard(double *f, const double *v, double vmax, double damping)
{
    double s = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (s <= vmax) return;
    double ux = v[0] / s, uy = v[1] / s, uz = v[2] / s;
    double push = f[0] * ux + f[1] * uy + f[2] * uz;
    double c = (push > 0.0 ? push : 0.0) + damping * (s - vmax);
    f[0] -= c * ux;
    f[1] -= c * uy;
    f[2] -= c * uz;
}

static void face_guard(double *f, double v, double room_lo, double room_hi, double a2, double damping)
{
    if (v < 0.0) {
        double excess = room_lo > 0.0 ? -v - sqrt(a2 * room_lo) : -v;
        if (excess > 0.0) *f = (*f > 0.0 ? *f : 0.0) + damping * excess;
    } else if (v > 0.0) {
        double excess = room_hi > 0.0 ? v - sqrt(a2 * room_hi) : v;
        if (excess > 0.0) *f = (*f < 0.0 ? *f : 0.0) - damping * excess;
    }
}

static void orientation_error(const double *q, const double *qd, double *out)
{
    double w1 = q[0], x1 = q[1], y1 = q[2], z1 = q[3];
    double w2 = qd[0], x2 = -qd[1], y2 = -qd[2], z2 = -qd[3];
    double w = w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2;
    double x = w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2;
    double y = w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2;
    double z = w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2;
    if (w < 0.0) { w = -w; x = -x; y = -y; z = -z; }
    double s = sqrt(x * x + y * y + z * z);
    double scale = s > 1e-12 ? 2.0 * atan2(s, w) / s : 2.0;
    out[0] = x * scale;
    out[1] = y * scale;
    out[2] = z * scale;
}

/* the impedance law: tau_raw (7) from the state, the reference and the gains; error (6) out */
static void law(const double *P, const double *q, const double *dq, const double *p, const double *quat,
                const double *J, const double *coriolis, const double *gravity, const double *f_ext,
                const double *pd, const double *qd, const double *vd, double *err, double *tau)
{
    double e[6], v[6], vm[6], F[6], tn[7], A[36], b[6], y[6];
    int i, j, k;
    e[0] = p[0] - pd[0]; e[1] = p[1] - pd[1]; e[2] = p[2] - pd[2];
    orientation_error(quat, qd, e + 3);
    for (i = 0; i < 6; i++) {
        double lim = i < 3 ? P[P_MAX_POS_ERR] : P[P_MAX_ROT_ERR];
        if (e[i] > lim) e[i] = lim;
        else if (e[i] < -lim) e[i] = -lim;
        err[i] = e[i];
    }
    for (i = 0; i < 6; i++) {
        double s = 0.0;
        for (j = 0; j < 7; j++) s += J[i * 7 + j] * dq[j];
        vm[i] = s;
        v[i] = P[P_VEL_FF] != 0.0 ? s - vd[i] : s;
        F[i] = -P[P_K + i] * e[i] + v[i] * -P[P_D + i];
    }
    speed_guard(F, vm, P[P_VGUARD], P[P_VDAMP]);
    speed_guard(F + 3, vm + 3, P[P_WGUARD], P[P_WDAMP]);
    for (i = 0; i < 3; i++)
        face_guard(F + i, vm[i], p[i] - P[P_WS_LO + i], P[P_WS_HI + i] - p[i], P[P_A2], P[P_VDAMP]);
    {   /* in contact, push into the surface by at most max_contact_force */
        double cx = f_ext[0], cy = f_ext[1], cz = f_ext[2];
        double cn = sqrt(cx * cx + cy * cy + cz * cz);
        if (cn > P[P_CONTACT_DETECT]) {
            cx /= cn; cy /= cn; cz /= cn;
            double excess = -(F[0] * cx + F[1] * cy + F[2] * cz) - P[P_MAX_CONTACT];
            if (excess > 0.0) { F[0] += excess * cx; F[1] += excess * cy; F[2] += excess * cz; }
        }
    }
    for (j = 0; j < 7; j++) {   /* J^T F */
        double s = 0.0;
        for (i = 0; i < 6; i++) s += F[i] * J[i * 7 + j];
        tau[j] = s;
        tn[j] = (P[P_QNULL + j] - q[j]) * P[P_KN] - dq[j] * P[P_DN];
    }
    /* null-space projection with the damped pseudo-inverse: y = (J J^T + reg I)^-1 J tn (Cholesky) */
    for (i = 0; i < 6; i++) {
        for (j = 0; j <= i; j++) {
            double s = 0.0;
            for (k = 0; k < 7; k++) s += J[i * 7 + k] * J[j * 7 + k];
            A[i * 6 + j] = s + (i == j ? P[P_REG] : 0.0);
        }
        double s = 0.0;
        for (k = 0; k < 7; k++) s += J[i * 7 + k] * tn[k];
        b[i] = s;
    }
    for (j = 0; j < 6; j++) {   /* lower-triangular L L^T in place */
        double d = A[j * 6 + j];
        for (k = 0; k < j; k++) d -= A[j * 6 + k] * A[j * 6 + k];
        d = sqrt(d);
        A[j * 6 + j] = d;
        for (i = j + 1; i < 6; i++) {
            double s = A[i * 6 + j];
            for (k = 0; k < j; k++) s -= A[i * 6 + k] * A[j * 6 + k];
            A[i * 6 + j] = s / d;
        }
    }
    for (i = 0; i < 6; i++) {
        double s = b[i];
        for (k = 0; k < i; k++) s -= A[i * 6 + k] * y[k];
        y[i] = s / A[i * 6 + i];
    }
    for (i = 5; i >= 0; i--) {
        double s = y[i];
        for (k = i + 1; k < 6; k++) s -= A[k * 6 + i] * y[k];
        y[i] = s / A[i * 6 + i];
    }
    for (j = 0; j < 7; j++) {
        double s = 0.0;
        for (i = 0; i < 6; i++) s += y[i] * J[i * 7 + j];
        tau[j] += tn[j] - s + coriolis[j];
        if (P[P_GRAVITY_COMP] != 0.0) tau[j] += gravity[j];
    }
}

/* joint-limit springs and the joint-velocity guard; a joint above dq_max brakes and stops the scan */
static int joint_guards(const double *P, const double *q, const double *dq, double *tau, double *events)
{
    int flags = 0, i, j;
    for (i = 0; i < 7; i++) events[i] = EV_NONE;
    for (i = 0; i < 7; i++) {
        double qi = q[i];
        if (qi < P[P_Q_LO + i]) {
            tau[i] += P[P_JL_STIFF] * (P[P_Q_LO + i] - qi);
            if (qi < P[P_Q_HARD_LO + i]) { events[i] = EV_BELOW; flags |= F_JOINT_LIMIT; }
        } else if (qi > P[P_Q_HI + i]) {
            tau[i] -= P[P_JL_STIFF] * (qi - P[P_Q_HI + i]);
            if (qi > P[P_Q_HARD_HI + i]) { events[i] = EV_ABOVE; flags |= F_JOINT_LIMIT; }
        }
        double v = dq[i], av = fabs(v);
        if (av > P[P_DQ_GUARD + i]) {
            if (av > P[P_DQ_MAX + i]) {
                for (j = 0; j < 7; j++) tau[j] = dq[j] * -P[P_STOP_DAMP];
                return flags | F_JOINT_VELOCITY | (i << F_JOINT_SHIFT);
            }
            tau[i] -= P[P_JV_DAMP] * (av - P[P_DQ_GUARD + i]) * (v > 0 ? 1.0 : -1.0);
        }
    }
    return flags;
}

/* saturate at tau_max, then limit the change from the last command (tau, in/out) */
static int limit_torque(const double *P, const double *raw, double *tau)
{
    int flags = 0;
    double r = P[P_TORQUE_RATE];
    for (int i = 0; i < 7; i++) {
        double v = raw[i], m = P[P_TAU_MAX + i];
        if (v > m) { v = m; flags |= F_SATURATED; }
        else if (v < -m) { v = -m; flags |= F_SATURATED; }
        double d = v - tau[i];
        if (d > r) { v = tau[i] + r; flags |= F_RATE_LIMITED; }
        else if (d < -r) { v = tau[i] - r; flags |= F_RATE_LIMITED; }
        tau[i] = v;
    }
    return flags;
}

/* a float64 C-contiguous buffer of exactly n values; view released by the caller */
static int get(PyObject *o, Py_ssize_t n, int writable, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(o, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, "d") != 0
        || view->len != n * 8) {
        PyErr_Format(PyExc_ValueError, "_claw: %s must be a C-contiguous float64 array of %zd values "
                     "(got %zd bytes, format %s)", name, n, view->len, view->format ? view->format : "?");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static const char *TICK_NAMES[] = {"params", "q", "dq", "ee_pos", "ee_quat", "J", "coriolis", "gravity",
                                   "f_ext", "ref_pos", "ref_quat", "ref_vel", "tau", "tau_raw", "error",
                                   "events"};
static const Py_ssize_t TICK_SIZES[] = {N_PARAMS, 7, 7, 3, 4, 42, 7, 7, 6, 3, 4, 6, 7, 7, 6, 7};
#define TICK_NARGS 16
#define TICK_FIRST_OUT 12

static PyObject *tick(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer b[TICK_NARGS];
    const double *a[TICK_NARGS];
    int i, flags;
    if (nargs != TICK_NARGS) {
        PyErr_Format(PyExc_TypeError, "_claw.tick takes %d arrays, got %zd", TICK_NARGS, nargs);
        return NULL;
    }
    for (i = 0; i < TICK_NARGS; i++) {
        if (get(args[i], TICK_SIZES[i], i >= TICK_FIRST_OUT, &b[i], TICK_NAMES[i]) < 0) {
            while (--i >= 0) PyBuffer_Release(&b[i]);
            return NULL;
        }
        a[i] = (const double *)b[i].buf;
    }
    double *tau = (double *)a[12], *raw = (double *)a[13], *err = (double *)a[14], *ev = (double *)a[15];
    law(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], err, raw);
    flags = joint_guards(a[0], a[1], a[2], raw, ev);
    flags |= limit_torque(a[0], raw, tau);
    for (i = 0; i < TICK_NARGS; i++) PyBuffer_Release(&b[i]);
    return PyLong_FromLong(flags);
}

/* stopped: brake with joint damping (+ coriolis), or ramp to zero when the state is stale */
static PyObject *brake(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *names[] = {"params", "dq", "coriolis", "tau", "tau_raw"};
    static const Py_ssize_t sizes[] = {N_PARAMS, 7, 7, 7, 7};
    Py_buffer b[5];
    int i, flags, stale;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "_claw.brake takes (params, dq, coriolis, tau, tau_raw, stale), got %zd "
                     "arguments", nargs);
        return NULL;
    }
    stale = PyObject_IsTrue(args[5]);
    if (stale < 0) return NULL;
    for (i = 0; i < 5; i++) {
        if (get(args[i], sizes[i], i >= 3, &b[i], names[i]) < 0) {
            while (--i >= 0) PyBuffer_Release(&b[i]);
            return NULL;
        }
    }
    const double *P = b[0].buf, *dq = b[1].buf, *cor = b[2].buf;
    double *tau = b[3].buf, *raw = b[4].buf;
    for (i = 0; i < 7; i++) raw[i] = stale ? 0.0 : dq[i] * -P[P_STOP_DAMP] + cor[i];
    flags = limit_torque(P, raw, tau);
    for (i = 0; i < 5; i++) PyBuffer_Release(&b[i]);
    return PyLong_FromLong(flags);
}

static PyMethodDef methods[] = {
    {"tick", (PyCFunction)(void (*)(void))tick, METH_FASTCALL,
     "tick(params, q, dq, ee_pos, ee_quat, J, coriolis, gravity, f_ext, ref_pos, ref_quat, ref_vel, tau, "
     "tau_raw, error, events) -> flags: law, joint guards, saturation and rate limit; tau in/out."},
    {"brake", (PyCFunction)(void (*)(void))brake, METH_FASTCALL,
     "brake(params, dq, coriolis, tau, tau_raw, stale) -> flags: joint-damping brake (zero when stale), limited."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_claw",
                                    "Compiled impedance law and torque safety layer (see _claw.c).", -1, methods};

PyMODINIT_FUNC PyInit__claw(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "N_PARAMS", N_PARAMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
