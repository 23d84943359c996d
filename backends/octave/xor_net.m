function net = xor_net(X, y, H, convention)
% XOR_NET  What every step of the 2-H-1 network on data X (n, d), y (n, 1) shares,
% built once per run: the columns of theta that hold W1, b1 and W2, the targets as a row,
% the output error's scale for the gradient convention ('mse' or 'half-sse') and three
% constant matrices that let xor_gradients run a batch of states as 2-D matrix products.
%
% A batch of B states is a B-row matrix, one state per row in the exchange order (W1
% row by row, b1, W2, b2), so a row of W1 is H consecutive columns. Sample s's hidden
% unit j sits at column (s-1)H + j of the hidden layer's (B, nH) matrices:
%   spread = kron(X', eye(H))          (dH, nH)  W1's rows times X: Z1 without b1;
%   tile   = kron(ones(1, n), eye(H))  (H, nH)   a per-unit row once per sample;
%   group  = kron(eye(n), ones(H, 1))  (nH, n)   the sum of each sample's H columns.
% Their other entries are zeros, which add nothing. Why products: the interpreters'
% cost is per operation, and a small 2-D product is far cheaper than broadcasting
% over a 4-D batch (docs/speed.md has the measured costs).
[n, d] = size(X);
net.n = n;
net.W1 = 1:d*H;
net.b1 = d*H+1:(d+1)*H;
net.W2 = (d+1)*H+1:(d+2)*H;
net.y = reshape(y, 1, n);
net.spread = kron(X', eye(H));
net.tile = kron(ones(1, n), eye(H));
net.group = kron(eye(n), ones(H, 1));
% the transposes, for the backward pass's products (each built once, not every epoch)
net.spread_t = net.spread';
net.tile_t = net.tile';
net.group_t = net.group';
if strcmp(convention, 'mse')
    net.out_scale = 2 / n;            % d mean(err.^2) / dA2 = 2 err / n
else
    net.out_scale = 1;                % d 0.5 sum(err.^2) / dA2 = err
end
end
