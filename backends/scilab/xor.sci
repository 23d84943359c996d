// The 2-H-1 sigmoid XOR network trained with any optimizer of the lineage (SGD,
// momentum, Nesterov, AdaGrad, RMSprop, AdaDelta, Adam in three forms, AdamW, AMSGrad),
// as every row of the cross-check trains it, in Scilab 6.1 or newer:
//
//   exec("xor.sci", -1); xor_train("init.json", "trajectory.csv")
//   exec("xor.sci", -1); xor_step("step.json", "states.f64", "phases.f64")
//
// xor_train reads what `python compare.py init --format json` writes and writes one
// line per epoch: the loss (the MSE, before the update), then the parameters after the
// update (W1, b1, W2, b2, each row by row): the format `compare.py --external` reads.
// xor_step takes one step from each of a batch of recorded states (the harness's
// lockstep check) and writes every phase's values. Both run the same xor_gradients
// and xor_rule.
//
// A batch of B states is a B-row matrix, one state per row in the exchange order, so
// a row of W1 is H consecutive columns. Sample s's hidden unit j sits at column
// (s-1)H + j of the hidden layer's (B, nH) matrices, and the layers are products with
// the constant matrices xor_net builds once (Scilab does not broadcast a column against
// a matrix; a product with ones or an identity spreads it, exactly).

function xor_train(init_file, out_file)
    init = fromJSON(init_file, "file");
    cfg = init.config;
    theta = matrix(init.flat, 1, -1);
    S = initial_slots(cfg, theta);
    net = xor_net(init.X, init.y, cfg.hidden, cfg.grad);
    record = zeros(cfg.epochs, 1 + size(theta, 2));
    for t = 1:cfg.epochs
        [loss, g] = xor_gradients(theta, net);
        [update, S] = xor_rule(g, S, theta, t, cfg);
        theta = theta - update;
        record(t, :) = [loss, theta];
    end
    csvWrite(record, out_file, ",", ".", "%.17g");
endfunction


function S = initial_slots(cfg, theta)
    // The optimizer's state before step 1, shaped like theta: AdaGrad's accumulator
    // starts at a0, NAdam's mu product at 1, Rprop's step sizes at lr, Yogi's moments at
    // 1e-6, every other slot at zero.
    S = struct();
    zero = zeros(theta);
    select cfg.optimizer
    case "momentum" then
        S.buf = zero;
    case "nesterov" then
        S.buf = zero;
    case "adagrad" then
        S.sum = cfg.initial_accumulator + zero;
    case "rmsprop" then
        S.v = zero;
    case "adadelta" then
        S.v = zero; S.u = zero;
    case "adam" then
        S.m = zero; S.v = zero;
    case "adamw" then
        S.m = zero; S.v = zero;
    case "amsgrad" then
        S.m = zero; S.v = zero; S.vmax = zero;
    case "nadam" then
        S.m = zero; S.v = zero; S.mu_product = 1 + zero;
    case "nadamw" then
        S.m = zero; S.v = zero; S.mu_product = 1 + zero;
    case "radam" then
        S.m = zero; S.v = zero;
    case "adamax" then
        S.m = zero; S.umax = zero;
    case "lion" then
        S.m = zero;
    case "rprop" then
        S.step_size = cfg.lr + zero; S.prev = zero;
    case "rmsprop_centered" then
        S.v = zero; S.gavg = zero;
    case "rmsprop_momentum" then
        S.v = zero; S.buf = zero;
    case "adabelief" then
        S.m = zero; S.s = zero;
    case "yogi" then                  // optax's starting accumulators
        S.m = 1e-06 + zero; S.v = 1e-06 + zero;
    end
endfunction


function xor_step(step_file, states_file, out_file)
    // step.json: an init file with count (B), slots (the state slots in the order the
    // states file holds them, e.g. "m,v") and phases (the optimizer's phases in the
    // order to write them, e.g. "m,v,update"). states.f64: B records of little-endian
    // float64: the parameters (4H+1), each slot the same way, the steps taken.
    // phases.f64 gets B records: Z1, A1 (4 x H, row by row), Z2, A2 (4), the loss, the
    // gradient, each optimizer phase and the new parameters (4H+1 each).
    init = fromJSON(step_file, "file");
    B = init.count;
    slots = tokens(init.slots, ",");
    phases = tokens(init.phases, ",");
    p = size(init.flat, "*");
    width = p * (1 + size(slots, "*")) + 1;
    fd = mopen(states_file, "rb");
    numbers = mget(B * width, "dl", fd);
    mclose(fd);
    if size(numbers, "*") <> B * width then
        error(msprintf("%s holds %d numbers, not %d records of %d", states_file, size(numbers, "*"), B, width));
    end
    records = matrix(numbers, width, B)';
    S = struct();
    for i = 1:size(slots, "*")
        S(slots(i)) = records(:, p * i + 1:p * (i + 1));
    end
    theta = records(:, 1:p);
    net = xor_net(init.X, init.y, init.config.hidden, init.config.grad);
    [loss, g, Z1, A1, Z2, A2] = xor_gradients(theta, net);
    [update, S] = xor_rule(g, S, theta, records(:, $) + 1, init.config);
    out = [Z1, A1, Z2, A2, loss, g];
    for i = 1:size(phases, "*")
        if phases(i) == "update" then
            out = [out, update];
        else
            out = [out, S(phases(i))];
        end
    end
    out = [out, theta - update];
    fd = mopen(out_file, "wb");
    mput(matrix(out', 1, -1), "dl", fd);
    mclose(fd);
endfunction


function net = xor_net(X, y, H, convention)
    // What every step shares, built once per run: the columns of theta that hold W1,
    // b1 and W2, the targets as a row, the output error's scale for the gradient
    // convention ("mse" or "half-sse"), and the layers' constant matrices:
    //   spread = kron(X', eye(H))          (dH, nH)  W1's rows times X: Z1 without b1;
    //   tile   = kron(ones(1, n), eye(H))  (H, nH)   a per-unit row once per sample;
    //   group  = kron(eye(n), ones(H, 1))  (nH, n)   the sum of each sample's H columns.
    // Their other entries are zeros, which add nothing. Why products: the interpreter's
    // cost is per operation, and one product replaces a loop over the samples and inputs
    // (docs/speed.md has the measured costs).
    [n, d] = size(X);
    net = struct();
    net.n = n;
    net.W1 = 1:d*H;
    net.b1 = d*H+1:(d+1)*H;
    net.W2 = (d+1)*H+1:(d+2)*H;
    net.y = matrix(y, 1, -1);
    net.spread = kron(X', eye(H, H));
    net.tile = kron(ones(1, n), eye(H, H));
    net.group = kron(eye(n, n), ones(H, 1));
    // the transposes, for the backward pass's products (each built once, not every epoch)
    net.spread_t = net.spread';
    net.tile_t = net.tile';
    net.group_t = net.group';
    if convention == "mse" then
        net.out_scale = 2 / n;        // d mean(err.^2) / dA2 = 2 err / n
    else
        net.out_scale = 1;            // d 0.5 sum(err.^2) / dA2 = err
    end
endfunction


function [loss, g, Z1, A1, Z2, A2] = xor_gradients(theta, net)
    // The logged MSE of each state (a column) and the exact gradient of the
    // convention's loss ("mse", or "half-sse": 0.5*sum((A2 - y).^2), twice the MSE's
    // gradient for 4 samples), by hand backprop, in theta's layout; then the forward
    // pass (Z1, A1 (B, nH), Z2, A2 (B, n)). net is xor_net's.
    B = size(theta, 1);
    W2 = theta(:, net.W2) * net.tile;                 // W2(j) beside every sample's unit j
    Z1 = theta(:, net.W1) * net.spread + theta(:, net.b1) * net.tile;
    A1 = 1 ./ (1 + exp(-Z1));                         dA1_dZ1 = A1 .* (1 - A1);
    Z2 = (A1 .* W2) * net.group + theta(:, $) * ones(1, net.n);
    A2 = 1 ./ (1 + exp(-Z2));                         dA2_dZ2 = A2 .* (1 - A2);
    err = A2 - ones(B, 1) * net.y;
    loss = sum(err .* err, "c") / net.n;

    dZ2 = net.out_scale * err .* dA2_dZ2;
    dZ2_units = dZ2 * net.group_t;                    // sample s's dZ2 once per hidden unit
    dZ1 = dZ2_units .* W2 .* dA1_dZ1;                 // Z2 = A1 W2 + b2: dZ2/dA1 = W2
    // Z1 = X W1 + b1: dZ1/dW1(i, j) = X(:, i); dZ2/dW2(j) = A1(:, j)
    g = [dZ1 * net.spread_t, dZ1 * net.tile_t, (A1 .* dZ2_units) * net.tile_t, sum(dZ2, "c")];
endfunction


function [delta, new] = xor_rule(g, old, theta, t, cfg)
    // One optimizer step, element-wise: from the gradient g, the slots old (buf, sum,
    // v, u, m, vmax as the optimizer keeps them, shaped like g), the parameters theta
    // and the 1-based step t (a scalar, or a column: one per state), the step delta
    // subtracted (theta - delta) and the new slots. The rules and hyperparameter names
    // are those of reference/optimizers.py.
    new = struct();
    select cfg.optimizer
    case "sgd" then
        delta = cfg.lr * g;
    case "momentum" then              // heavy ball
        new.buf = cfg.momentum * old.buf + g;
        delta = cfg.lr * new.buf;
    case "nesterov" then
        new.buf = cfg.momentum * old.buf + g;
        delta = cfg.lr * (g + cfg.momentum * new.buf);
    case "adagrad" then
        new.sum = old.sum + g .* g;
        delta = cfg.lr * g ./ (sqrt(new.sum) + cfg.eps);
    case "rmsprop" then
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        delta = cfg.lr * g ./ (sqrt(new.v) + cfg.eps);
    case "adadelta" then
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        step = sqrt(old.u + cfg.eps) ./ sqrt(new.v + cfg.eps) .* g;
        new.u = cfg.rho * old.u + (1 - cfg.rho) * (step .* step);
        delta = cfg.lr * step;
    case "adam" then
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        delta = adam_step(new.m, new.v, t, cfg, cfg.adam);
    case "adamw" then                 // decoupled decay: lr (Adam's step + lambda theta)
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        delta = adam_step(new.m, new.v, t, cfg, "paper") + cfg.lr * cfg.weight_decay * theta;
    case "amsgrad" then               // the maximum of the raw v, bias-corrected afterwards
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        new.vmax = max(old.vmax, new.v);
        delta = adam_step(new.m, new.vmax, t, cfg, "paper");
    case "nadam" then
        [delta, new] = nadam_rule(g, old, theta, t, cfg);
    case "nadamw" then                // NAdam with decoupled decay
        [delta, new] = nadam_rule(g, old, theta, t, cfg);
        delta = delta + cfg.lr * cfg.weight_decay * theta;
    case "radam" then                 // rectified where rho_t > 5, SGD with momentum before
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        spread = ones(1, size(g, 2));
        rho_inf = 2 / (1 - cfg.beta2) - 1;
        rho = (rho_inf - 2 * t .* cfg.beta2 .^ t ./ (1 - cfg.beta2 .^ t)) * spread;
        safe = max(rho, 5);
        rect = sqrt((safe - 4) .* (safe - 2) * rho_inf ./ ((rho_inf - 4) * (rho_inf - 2) * safe));
        m_hat = new.m ./ ((1 - cfg.beta1 .^ t) * spread);
        delta = m_hat * cfg.lr;
        rectified = delta .* (sqrt((1 - cfg.beta2 .^ t) * spread) ./ (sqrt(new.v) + cfg.eps)) .* rect;
        delta(rho > 5) = rectified(rho > 5);
    case "adamax" then                // the infinity norm's decaying maximum, eps inside it
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.umax = max(cfg.beta2 * old.umax, abs(g) + cfg.eps);
        delta = ((cfg.lr ./ (1 - cfg.beta1 .^ t)) * ones(1, size(g, 2))) .* (new.m ./ new.umax);
    case "lion" then                  // the sign of an interpolation, from m before the step
        direction = sign((1 - cfg.beta1) * g + cfg.beta1 * old.m);
        new.m = cfg.beta2 * old.m + (1 - cfg.beta2) * g;
        delta = cfg.lr * (direction + cfg.weight_decay * theta);
    case "rprop" then                 // iRprop-: a sign change shrinks the step and skips it
        agreement = g .* old.prev;
        factor = ones(g);
        factor(agreement > 0) = cfg.eta_plus;
        factor(agreement < 0) = cfg.eta_minus;
        new.step_size = min(max(old.step_size .* factor, cfg.step_size_min), cfg.step_size_max);
        new.prev = g;
        new.prev(agreement < 0) = 0;
        delta = sign(new.prev) .* new.step_size;
    case "rmsprop_centered" then      // the root of the variance, not of the mean square
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        new.gavg = cfg.rho * old.gavg + (1 - cfg.rho) * g;
        delta = cfg.lr * g ./ (sqrt(new.v - new.gavg .* new.gavg) + cfg.eps);
    case "rmsprop_momentum" then      // momentum on the scaled gradient, lr outside
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        new.buf = cfg.momentum * old.buf + g ./ (sqrt(new.v) + cfg.eps);
        delta = cfg.lr * new.buf;
    case "adabelief" then             // the variance around m: the belief
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        surprise = g - new.m;
        new.s = cfg.beta2 * old.s + (1 - cfg.beta2) * (surprise .* surprise) + cfg.eps_root;
        delta = adam_step(new.m, new.s, t, cfg, "paper");
    case "yogi" then                  // v moves towards g^2 by at most (1 - beta2) g^2
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        square = g .* g;
        new.v = old.v - (1 - cfg.beta2) * sign(old.v - square) .* square;
        delta = adam_step(new.m, new.v, t, cfg, "paper");
    else
        error("unknown optimizer " + cfg.optimizer);
    end
endfunction


function [delta, new] = nadam_rule(g, old, theta, t, cfg)
    // torch.optim's NAdam: the mu schedule and its running product, per state spread
    // over the columns.
    new = struct();
    spread = ones(1, size(g, 2));
    new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
    new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
    mu = cfg.beta1 * (1 - 0.5 * 0.96 .^ (t * cfg.momentum_decay)) * spread;
    mu_next = cfg.beta1 * (1 - 0.5 * 0.96 .^ ((t + 1) * cfg.momentum_decay)) * spread;
    new.mu_product = old.mu_product .* mu;
    denom = sqrt(new.v ./ ((1 - cfg.beta2 .^ t) * spread)) + cfg.eps;
    delta = cfg.lr * (1 - mu) ./ (1 - new.mu_product) .* g ./ denom + cfg.lr * mu_next ./ (1 - new.mu_product .* mu_next) .* new.m ./ denom;
endfunction


function delta = adam_step(m, v, t, cfg, form)
    // Adam's step in one of its three forms (reference/adam.py); the bias corrections
    // per state are spread over the columns.
    spread = ones(1, size(m, 2));
    bc1 = (1 - cfg.beta1 .^ t) * spread;
    bc2 = (1 - cfg.beta2 .^ t) * spread;
    select form
    case "paper" then                 // Kingma & Ba, Algorithm 1
        delta = cfg.lr * (m ./ bc1) ./ (sqrt(v ./ bc2) + cfg.eps);
    case "epshat" then                // the paper's "efficient" form: eps outside the corrections
        delta = cfg.lr * sqrt(bc2) ./ bc1 .* m ./ (sqrt(v) + cfg.eps);
    case "article" then               // the article's constant denominators
        delta = cfg.lr * (m / (1 - cfg.beta1)) ./ (sqrt(v / (1 - cfg.beta2)) + cfg.eps);
    case "seed" then                  // its old name, taken for one release
        delta = cfg.lr * (m / (1 - cfg.beta1)) ./ (sqrt(v / (1 - cfg.beta2)) + cfg.eps);
    else
        error("unknown Adam form " + form);
    end
endfunction
