function xor_adam(init_file, out_file)
% XOR_ADAM  The 2-H-1 sigmoid XOR network trained with Adam (Kingma & Ba), as every
% row of the cross-check trains it, written in plain MATLAB (runs unchanged in MATLAB
% R2016b or newer and in GNU Octave 7 or newer).
%
%   xor_adam('init.json', 'trajectory.csv')
%
% init.json is what `python compare.py init --format json` writes: the initial weights
% W1 (2,H), b1 (1,H), W2 (H,1), b2 (1,1), the data X (4,2), y (4,1) and the config
% (lr, beta1, beta2, eps, epochs, grad). trajectory.csv gets one line per epoch: the
% loss (the MSE, before the update), then the parameters after the update, W1, b1, W2,
% b2, each row by row: the format `python compare.py --external NAME=FILE` reads.

init = jsondecode(fileread(init_file));
cfg = init.config;
W1 = init.params.W1;  b1 = reshape(init.params.b1, 1, []);
W2 = reshape(init.params.W2, [], 1);  b2 = init.params.b2;
X = init.X;  y = reshape(init.y, [], 1);
n = size(X, 1);
if strcmp(cfg.grad, 'mse')
    out_scale = 2 / n;          % d mean((A2 - y).^2) / dA2 = 2 (A2 - y) / n
else
    out_scale = 1;              % half-sse: d 0.5 sum((A2 - y).^2) / dA2 = A2 - y
end

mW1 = zeros(size(W1)); vW1 = mW1;  mb1 = zeros(size(b1)); vb1 = mb1;
mW2 = zeros(size(W2)); vW2 = mW2;  mb2 = zeros(size(b2)); vb2 = mb2;
H = size(W1, 2);
record = zeros(cfg.epochs, 1 + 4 * H + 1);

for t = 1:cfg.epochs
    Z1 = X * W1 + b1;                 % b1 (1,H) broadcasts over the 4 samples
    A1 = 1 ./ (1 + exp(-Z1));         dA1_dZ1 = A1 .* (1 - A1);
    Z2 = A1 * W2 + b2;
    A2 = 1 ./ (1 + exp(-Z2));         dA2_dZ2 = A2 .* (1 - A2);
    err = A2 - y;
    loss = sum(err .* err) / n;

    dZ2 = out_scale * err .* dA2_dZ2;
    gW2 = A1' * dZ2;                  gb2 = sum(dZ2, 1);
    dZ1 = (dZ2 * W2') .* dA1_dZ1;
    gW1 = X' * dZ1;                   gb1 = sum(dZ1, 1);

    bc1 = 1 - cfg.beta1 ^ t;  bc2 = 1 - cfg.beta2 ^ t;
    [W1, mW1, vW1] = adam_update(W1, gW1, mW1, vW1, bc1, bc2, cfg);
    [b1, mb1, vb1] = adam_update(b1, gb1, mb1, vb1, bc1, bc2, cfg);
    [W2, mW2, vW2] = adam_update(W2, gW2, mW2, vW2, bc1, bc2, cfg);
    [b2, mb2, vb2] = adam_update(b2, gb2, mb2, vb2, bc1, bc2, cfg);

    record(t, :) = [loss, reshape(W1', 1, []), b1, W2', b2];
end

fid = fopen(out_file, 'w');
if fid < 0
    error('xor_adam:write', 'cannot write %s', out_file);
end
fprintf(fid, [repmat('%.17g,', 1, size(record, 2) - 1), '%.17g\n'], record');
fclose(fid);
end


function [theta, m, v] = adam_update(theta, g, m, v, bc1, bc2, cfg)
% One Adam step for one tensor: moments, bias correction, the step.
m = cfg.beta1 * m + (1 - cfg.beta1) * g;
v = cfg.beta2 * v + (1 - cfg.beta2) * (g .* g);
theta = theta - cfg.lr * (m / bc1) ./ (sqrt(v / bc2) + cfg.eps);
end
