# PyTorch reference timings for the shapes of `convbench bench` (2 threads).
import time, sys, torch
torch.set_num_threads(2)
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
cases = [
    ("3d [2,32,32,40,40] 32->32 k3s1", [2,32,32,40,40], 32, 3, 1, 1, False),
    ("3d [2,32,32,40,40] 32->64 k3s2", [2,32,32,40,40], 64, 3, 2, 1, False),
    ("3d [2,64,16,20,20] 64->64 k3s1", [2,64,16,20,20], 64, 3, 1, 1, False),
    ("3d [2,128,8,10,10] 128->128 k3s1", [2,128,8,10,10], 128, 3, 1, 1, False),
    ("3d [2,256,4,5,5] 256->320 k3s1", [2,256,4,5,5], 320, 3, 1, 1, False),
    ("3d T [2,64,16,20,20] 64->32 k2s2", [2,64,16,20,20], 32, 2, 2, 0, True),
    ("3d [2,32,32,40,40] 32->3 k1 head", [2,32,32,40,40], 3, 1, 1, 0, False),
    ("2d [12,32,256,256] 32->32 k3s1", [12,32,256,256], 32, 3, 1, 1, False),
    ("2d [12,64,128,128] 64->64 k3s1", [12,64,128,128], 64, 3, 1, 1, False),
    ("2d T [12,64,128,128] 64->32 k2s2", [12,64,128,128], 32, 2, 2, 0, True),
]
tf_tot = tb_tot = 0
for name, xs, co, k, s, p, tr in cases:
    nd = len(xs) - 2
    ci = xs[1]
    Conv = {(2,False): torch.nn.Conv2d, (3,False): torch.nn.Conv3d, (2,True): torch.nn.ConvTranspose2d, (3,True): torch.nn.ConvTranspose3d}[(nd,tr)]
    m = Conv(ci, co, k, stride=s, padding=p, bias=True)
    x = torch.randn(*xs, requires_grad=True)
    with torch.no_grad():
        g = torch.randn_like(m(x))
    tf, tb = [], []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            m(x)
        t1 = time.perf_counter()
        y = m(x)
        y.backward(g)
        t2 = time.perf_counter()
        x.grad = None; m.zero_grad()
        if r: tf.append((t1-t0)*1e3); tb.append((t2-t1)*1e3)
    tf.sort(); tb.sort()
    tf_tot += tf[len(tf)//2]; tb_tot += tb[len(tb)//2]
    print(f"{name:<36} | fwd {tf[0]:8.1f} / {tf[len(tf)//2]:8.1f} | f+b {tb[0]:8.1f} / {tb[len(tb)//2]:8.1f}")
print(f"sum of medians: fwd {tf_tot:.0f} fwd+bwd {tb_tot:.0f}")
